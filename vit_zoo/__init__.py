"""vit_zoo: every Vision Transformer variant from one Keras 3 builder, and the published checkpoints."""
from vit_zoo.config import ViTConfig
from vit_zoo.model import build
from vit_zoo.resample import resample_position_embeddings
from vit_zoo.variants import list_models, resolve_name

__version__ = "0.1.0"
