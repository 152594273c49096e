"""samfx plugin 'sam'."""
