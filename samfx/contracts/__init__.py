"""The lowest layer: what plugins build against and how they are found. Errors, the torch
interfaces and the values passed between components, the checkpoint-kind and weight-layout value
types, field ranges, the hook specs, the registry and the plugin manager. Imports nothing else of
samfx; docs/plugins.md lists the modules plugins may import."""
