"""An example third-party samfx plugin (see README.md)."""
