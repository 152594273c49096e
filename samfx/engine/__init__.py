"""Training, evaluation and prediction (docs/engine.md).

trainer (stages, resume, DDP, precision, NaN stop) · stage (a stage's plan and optimizer step) ·
inference (precision, the forward -> label map path) · validation · evaluate (``samfx eval``) ·
predict (``samfx predict``) · checkpointing / rundir / runlog (run folder) · sampler / seeding
(exact data order) · optim (optimizer, schedules) · distributed (torchrun) · clips (temporal hook) ·
testing (tiny stand-in components for tests).
"""
