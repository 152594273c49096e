"""The composed model: ``SegmentationModel`` and its outputs, the component table (``roles``), the
frame-by-frame clip forward, building from a recipe, loading weights into it, stage trainable sets,
the dummy forward check and ``samfx show``'s summary."""
