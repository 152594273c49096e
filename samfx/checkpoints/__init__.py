"""Weights files: reading and writing them safely (``files``), which plugin's layout a file is
(``kinds``) and ``samfx inspect``. Loading weights into a model is ``samfx.model.weights``."""
