"""Weights: the manifest, downloads (HTTP and the Hugging Face Hub), the cache, published weights, and
loading a checkpoint into a model. ``vit_zoo.weights.download`` (with ``.http`` and ``.hub``), ``.cache``
and ``.manifest`` import neither Keras nor TensorFlow."""
