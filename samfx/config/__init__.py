"""Recipes: the typed schema of the core sections, YAML reading, layer merging and overrides,
validation (``recipe.load_recipe``) and dotted key paths."""
