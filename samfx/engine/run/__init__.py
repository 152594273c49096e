"""The run folder and what every engine command shares: its lock, log and checkpoints, torchrun
set-up, seeding and the data loaders."""
