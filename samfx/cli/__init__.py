"""The `samfx` command line (typer). Subcommand modules import torch only inside commands."""
