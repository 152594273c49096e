"""samfx plugin 'datasets'."""
