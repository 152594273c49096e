"""samfx plugin 'losses'."""
