"""Videos and the stores made from them: sources, downloads, extraction, splits, actions, zarr stores
and the loaders that read them. Imports core and config; no model."""
