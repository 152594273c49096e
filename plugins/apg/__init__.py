"""samfx plugin 'apg'."""
