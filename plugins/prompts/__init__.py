"""samfx plugin 'prompts'."""
