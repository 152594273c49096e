"""Evaluation: the forward -> label map path (``inference``), ``samfx eval``, validation during
training, whole sequences, overlays, segmentation metrics and clinical measures."""
