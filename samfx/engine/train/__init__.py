"""Training: the trainer, its session over the run folder, a stage's plan and optimizer step, the
per-batch step modules, optimizers and schedules, the exact data order, Ctrl-C / SIGTERM."""
