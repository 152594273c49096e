"""`samfx bench` command. Filled by the performance work."""
