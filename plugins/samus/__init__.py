"""samfx plugin 'samus'."""
