"""`samfx data ...` commands (registered on the `data` sub-app). Filled by the data work."""
