"""Checkpoint converters (installed as ``vit_zoo.converters``): one module per format."""
