"""The model: ``ViTConfig``, the variants table, layers, the one builder, resampling, counts, fast paths.
Imports nothing from downloads, converters, use, training or the CLI."""
