"""samfx plugin 'lora'."""
