"""`samfx train | eval | predict` commands. Filled by the engine work."""
