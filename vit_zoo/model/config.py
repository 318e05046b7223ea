"""ViTConfig: every architectural and numerical choice of a Vision Transformer, validated on creation."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple, Union

from vit_zoo.model import variants
from vit_zoo.model.config_checks import (  # noqa: F401 (the field values are part of the config's API)
    GELU_FLAVOURS, HEAD_KINDS, MLP_KINDS, POOLINGS, RESAMPLING_MODES, check_patch_multiple, image_size_pair,
    three_floats, validate)



@dataclasses.dataclass(frozen=True)
class ViTConfig:
    """Architecture and numerics of one ViT; the defaults are ViT-B/16 at 224 px with 1000 classes.

    Fields:
        image_size: input (height, width) in pixels; an int means a square image. Position embeddings
            are stored for its patch grid. A size the patch does not divide is kept as the sources keep it:
            their strided patch convolution does not see the last (size mod patch) rows and columns
            (SigLIP So400m/14 at 384 px: a 27 x 27 grid).
        patch_size: side of the square patches, in pixels.
        patch_bias: the patch embedding has a bias (False: CLIP's ``conv1``).
        hidden_size, mlp_size, num_heads, num_layers: width D, MLP width M, heads H, depth.
        class_token: prepend a learned class token.
        distillation_token: a second learned token after the class token (DeiT distilled models).
        register_tokens: learned register tokens inserted after the class (and distillation) token, after
            the position embeddings are added (DINOv2 with registers: 4). They carry no position embedding.
        prefix_position_embeddings: the class and distillation tokens carry position embeddings, added
            before the blocks (classic ViT, DeiT, DINOv2); False: position embeddings for the patches only,
            the tokens joined after they are added (timm ``no_embed_class``: DeiT-III, timm's register
            models).
        position_grid: the (rows, columns) patch grid the position embeddings are stored for, when it is
            not the input's (DINOv2: (37, 37), 518 px, used at 224 px and above): the embeddings are then
            interpolated to the input's grid inside the model with ``position_embedding_resampling``, as
            the source does at run time. None: stored for ``image_size``.
        pre_norm: a LayerNorm (``norm_pre``) on the whole sequence after the position embeddings, before
            the blocks (CLIP's ``ln_pre``).
        pooling: how the head sees the sequence: ``"token"`` (class token after the final norm),
            ``"gap"`` (mean of the patch tokens after the final norm, as vit_jax "gap" models),
            ``"avg-fcnorm"`` (no final norm; mean of the patch tokens, then ``fc_norm``, as timm) or
            ``"token-mean"`` (class token ‖ mean of the patch tokens after the final norm, (B, 2D): DINOv2's
            linear heads) or ``"map"`` (multi-head attention pooling after the final norm: a learned probe
            attends over every token, then ``a + MLP(LN(a))``: SigLIP's MAP head, (B, D)). Means never
            include prefix (class, distillation, register) tokens.
        layer_scale: LayerScale (a learned per-channel scale on each residual branch, DeiT-III and DINOv2)
            with this initial value, or None for none.
        mlp: ``"gelu"`` (Linear, GELU, Linear) or ``"swiglu"`` (one Linear to 2M, SiLU of the first half
            times the second half, Linear back: DINOv2 giant's fused SwiGLU); ``mlp_size`` is M.
        head: ``"linear"`` (one Dense) or ``"distilled"`` (DeiT: ``head`` on the class token and
            ``head_dist`` on the distillation token, averaged at inference; both train).
        representation_size: width of the pre-logits layer (Dense + tanh), or None for none.
        projection_size: width E of a bias-free projection of the pooled representation, in the top
            (CLIP's ``proj``: the image embedding), or None for none.
        gelu: ``"exact"`` (erf: PyTorch, Hugging Face, timm), ``"tanh"`` (Flax / vit_jax, SigLIP) or
            ``"quick"`` (``x * sigmoid(1.702 x)``: OpenAI's CLIP).
        layer_norm_epsilon: epsilon of every LayerNorm (vit_jax and timm 1e-6, Hugging Face 1e-12).
        qkv_bias: biases on the query, key and value projections.
        mean, std: per-channel normalisation of [0, 1] RGB pixels the weights were trained with.
        num_classes: width of the classification head; 0 for none: the top (include_top) then outputs
            the image embedding (the projection of the pooled representation, or that representation),
            as an image tower (CLIP, SigLIP) does; with a head, it classifies that embedding.
        dropout_rate, attention_dropout_rate, drop_path_rate: regularisation, active in training only;
            the drop-path rate grows linearly from 0 in the first block to this value in the last.
        position_embedding_resampling: how position embeddings are resampled to another grid:
            ``"bicubic"`` (default; PyTorch ``interpolate(mode="bicubic", align_corners=False)`` as
            timm and Hugging Face use), ``"bilinear"`` (``align_corners=False``),
            ``"bilinear-corners"`` (``scipy.ndimage.zoom(order=1)``, as vit_jax and big_vision),
            ``"bicubic-antialias"`` (``interpolate(mode="bicubic", antialias=True)``: timm's DINOv2,
            Meta's and Hugging Face's DINOv2 with registers) or ``"bicubic-offset"`` (Meta's DINOv2
            hub models: bicubic with ``scale_factor=(H + 0.1) / h``); see ``vit_zoo.model.resample``.
    """

    image_size: Union[int, Tuple[int, int]] = 224
    patch_size: int = 16
    patch_bias: bool = True
    hidden_size: int = 768
    mlp_size: int = 3072
    num_heads: int = 12
    num_layers: int = 12
    class_token: bool = True
    distillation_token: bool = False
    register_tokens: int = 0
    prefix_position_embeddings: bool = True
    position_grid: Optional[Tuple[int, int]] = None
    pre_norm: bool = False
    pooling: str = "token"
    representation_size: Optional[int] = None
    projection_size: Optional[int] = None
    gelu: str = "exact"
    layer_norm_epsilon: float = 1e-6
    qkv_bias: bool = True
    mean: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    num_classes: int = 1000
    dropout_rate: float = 0.0
    attention_dropout_rate: float = 0.0
    drop_path_rate: float = 0.0
    position_embedding_resampling: str = "bicubic"
    layer_scale: Optional[float] = None
    mlp: str = "gelu"
    head: str = "linear"

    def __post_init__(self):
        set_field = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        set_field("image_size", image_size_pair(self.image_size))
        set_field("mean", three_floats("mean", self.mean))
        set_field("std", three_floats("std", self.std))
        for name in ("representation_size", "projection_size"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), bool):
                set_field(name, int(getattr(self, name)))
        if self.position_grid is not None:
            set_field("position_grid", image_size_pair(self.position_grid))
        if self.layer_scale is not None and not isinstance(self.layer_scale, bool):
            set_field("layer_scale", float(self.layer_scale))
        validate(self)

    # ----------------------------------------------------------------------------------------------
    @classmethod
    def from_name(cls, name: str, **overrides) -> "ViTConfig":
        """Config of a named variant (any alias); an image size in the name (``..._384``) is used
        unless ``image_size`` is overridden."""
        fields = variants.variant_fields(name)
        _, image_size = variants.resolve_name(name)
        if image_size is not None:
            fields["image_size"] = image_size
        fields.update({key: value for key, value in overrides.items()})
        return cls(**fields)

    @classmethod
    def from_dict(cls, data: dict) -> "ViTConfig":
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ViTConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**data)

    def to_dict(self) -> dict:
        """Plain JSON-able dict (tuples become lists)."""
        return {key: list(value) if isinstance(value, tuple) else value
                for key, value in dataclasses.asdict(self).items()}

    def replace(self, **changes) -> "ViTConfig":
        return dataclasses.replace(self, **changes)

    # ----------------------------------------------------------------------------------------------
    @property
    def grid_size(self) -> Tuple[int, int]:
        """Patch grid (rows, columns)."""
        return (self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size)

    @property
    def num_patches(self) -> int:
        return self.grid_size[0] * self.grid_size[1]

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: class, distillation and register tokens."""
        return int(self.class_token) + int(self.distillation_token) + self.register_tokens

    @property
    def num_embedded_prefix_tokens(self) -> int:
        """Prefix tokens that carry a position embedding (the class and distillation tokens, unless
        ``prefix_position_embeddings`` is False; registers never)."""
        return int(self.class_token) + int(self.distillation_token) if self.prefix_position_embeddings else 0

    @property
    def stored_position_grid(self) -> Tuple[int, int]:
        """The patch grid the position embeddings are stored for: ``position_grid``, else the input's."""
        return self.position_grid or self.grid_size

    @property
    def num_position_embeddings(self) -> int:
        """Rows of the stored position embeddings: embedded prefix tokens + the stored grid's patches."""
        rows, columns = self.stored_position_grid
        return self.num_embedded_prefix_tokens + rows * columns

    @property
    def pooled_width(self) -> int:
        """Width of the pooled representation the head sees (before pre-logits): D, or 2D for token-mean."""
        return self.hidden_size * (2 if self.pooling == "token-mean" else 1)

    @property
    def embedding_width(self) -> int:
        """Width of what the top outputs without a classifier: the projection's, else the representation's
        (pre-logits or pooled)."""
        return self.projection_size or self.representation_size or self.pooled_width

    @property
    def num_tokens(self) -> int:
        return self.num_patches + self.num_prefix_tokens

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def variant(self) -> Optional[str]:
        """Our variant name if the architecture is a named one (``"vit-base-16"``, ``"dinov2-small-14"``),
        else None. Numerics and storage (mean/std, epsilon, image size, position grid, LayerScale's initial
        value) do not count; where two families share an architecture (a DeiT is a classic ViT), the one
        whose mean/std the config has wins."""
        matches = [name for name in variants.list_models()
                   if all(_same_architecture(key, getattr(self, key), value)
                          for key, value in {**ARCHITECTURE_DEFAULTS, **variants.architecture_fields(name)}.items())]
        default_normalisation = (ViTConfig.mean, ViTConfig.std)
        for name in matches:
            defaults = variants.variant_fields(name)
            if (tuple(defaults.get("mean", default_normalisation[0])),
                    tuple(defaults.get("std", default_normalisation[1]))) == (self.mean, self.std):
                return name
        return matches[0] if matches else None

    def architecture_differences(self, other: "ViTConfig") -> list:
        """The architecture fields (what a variant name fixes: patch, widths, depth, heads, prefix tokens,
        LayerScale's presence, MLP and head kinds) in which ``other`` differs from this config."""
        fields = ("patch_size",) + variants.Size._fields + tuple(ARCHITECTURE_DEFAULTS)
        return [f for f in fields if not _same_architecture(f, getattr(other, f), getattr(self, f))]

# Architecture fields a variant name fixes only where its family says so (their defaults otherwise).
ARCHITECTURE_DEFAULTS = dict(class_token=True, distillation_token=False, register_tokens=0, layer_scale=None,
                             mlp="gelu", head="linear", pre_norm=False, patch_bias=True, projection_size=None,
                             pooling="token")


def _same_architecture(field: str, value, expected) -> bool:
    """LayerScale counts by presence (its initial value is a numeric), pooling by whether it is the MAP head
    (the other poolings hold no variables of their own); every other field by value."""
    if field == "layer_scale":
        return (value is None) == (expected is None)
    if field == "pooling":
        return (value == "map") == (expected == "map")
    return value == expected
