"""``samfx bench``: training and inference throughput and memory of a recipe (``run``), and the
timing helpers it uses (``measure``)."""
