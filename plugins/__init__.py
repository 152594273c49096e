"""Built-in samfx plugins; each subfolder is one plugin, registered by entry point."""
