"""samfx plugin 'msff'."""
