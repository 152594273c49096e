"""samfx plugin 'stm'."""
