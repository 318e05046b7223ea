"""Export: a model to the formats people deploy (``formats``: SavedModel, TFLite, ONNX, .keras), each
carrying the model's identity (``metadata``), and running an export with its own class names and
preprocessing (``exported``)."""
from vit_zoo.exporting.exported import ExportedModel, is_exported, predict_exported, run_exported  # noqa: F401
from vit_zoo.exporting.formats import export, export_graph, keras_outputs  # noqa: F401
from vit_zoo.exporting.metadata import read_identity, read_metadata  # noqa: F401
