"""samfx plugin 'msa_adapter'."""
