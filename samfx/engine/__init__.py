"""Training, evaluation and the run folder (docs/engine.md).

``run`` (the run folder, its lock and log, run checkpoints, torchrun, seeding, data loaders) <
``eval`` (inference: the forward -> label map path; evaluate, validation, sequences, overlays,
metrics, clinical) < ``train`` (trainer, session, stage, steps, optim, sampler, interrupt) <
``bench`` (``samfx bench``) and ``testing`` (tiny stand-in plugins for tests).
"""
