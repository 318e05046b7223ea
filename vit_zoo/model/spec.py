"""The architecture spec: every variable of the model a ``ViTConfig`` describes, without Keras.

This is the one description of what a model holds. The builder (``vit_zoo.model.builder``) creates exactly
these variables, in this order (a test holds it to that); converters address them by their format-neutral
*slot* (``converters.targets`` zips each format's table ``slot → (source key, transform)`` with them); the
parameter counts (``vit_zoo.model.stats``) are their sizes summed. A new block option is one entry here,
its layer in the builder and its rows in each format's table.

Slots (our variable, shape; ``[…]`` when the config has it; D width, M MLP width, H heads, Dh = D / H):
    patch_embed.kernel, .bias       patch_embed/kernel (P, P, 3, D), bias (D,)            [bias: patch_bias]
    class_token                     class_token/token (1, 1, D)                            [class_token]
    distillation_token              distillation_token/tokens (1, 1, D)            [distillation_token]
    pos_embed                       pos_embed/embeddings (1, E + gh*gw, D); E embedded prefix tokens,
                                    (gh, gw) the stored grid (``ViTConfig.stored_position_grid``)
    register_tokens                 register_tokens/tokens (1, R, D)                    [register_tokens]
    norm_pre.scale, norm_pre.bias   norm_pre/gamma, beta (D,)                                  [pre_norm]
    norm1.scale, norm1.bias         block_{i:02d}_norm1/gamma, beta (D,)
    attn.{query,key,value}.kernel   block_{i:02d}_attn/query_kernel … (D, H, Dh)
    attn.{query,key,value}.bias     block_{i:02d}_attn/query_bias … (H, Dh)                 [qkv_bias]
    attn.out.kernel, .bias          block_{i:02d}_attn/output_kernel (H, Dh, D), output_bias (D,)
    ls1                             block_{i:02d}_ls1/gamma (D,)                          [layer_scale]
    norm2.scale, norm2.bias         block_{i:02d}_norm2/gamma, beta (D,)
    mlp.fc1.kernel, .bias           block_{i:02d}_mlp_fc1/kernel (D, M) -- (D, 2M) for SwiGLU --, bias
    mlp.fc2.kernel, .bias           block_{i:02d}_mlp_fc2/kernel (M, D), bias (D,)
    ls2                             block_{i:02d}_ls2/gamma (D,)                          [layer_scale]
    encoder_norm.scale, .bias       encoder_norm/gamma, beta (D,)                [pooling not avg-fcnorm]
    fc_norm.scale, .bias            fc_norm/gamma, beta (D,)                     [pooling avg-fcnorm]
    map.probe                       map_attn/probe (1, 1, D)                               [pooling map]
    map.attn.{query,key,value}.…,   map_attn/query_kernel … (D, H, Dh), _bias (H, Dh),
    map.attn.out.kernel, .bias      output_kernel (H, Dh, D), output_bias (D,)            [pooling map]
    map.norm.scale, .bias           map_norm/gamma, beta (D,)                              [pooling map]
    map.mlp.fc1.kernel, .bias       map_mlp_fc1/kernel (D, M), bias (M,)                   [pooling map]
    map.mlp.fc2.kernel, .bias       map_mlp_fc2/kernel (M, D), bias (D,)                   [pooling map]
    pre_logits.kernel, .bias        pre_logits/kernel (D, R), bias (R,)          [representation_size]
    projection.kernel               projection/kernel (D or R, E)                 [projection_size; top]
    head.kernel, .bias              head/kernel (D, 2D for token-mean, R or E; C), bias (C,)
                                                                              [include_top, num_classes]
    head_dist.kernel, .bias         head_dist/kernel (D, C), bias (C,)            [head "distilled"]

Kinds (what a container must do to bring such a tensor to our shape; ``converters.transforms``): a conv
kernel, a dense kernel, a bias, a norm scale or bias, a head-split attention kernel or bias, the attention's
output kernel, or a bare tensor stored as it is.
"""
from __future__ import annotations

from typing import Dict, List, NamedTuple, Optional

from vit_zoo.model.names import block_name


class Variable(NamedTuple):
    """One model variable: its slot (``"attn.query.kernel"``), path (``"block_03_attn/query_kernel"``),
    shape, kind (see the module docstring) and block index (None outside the blocks)."""

    slot: str
    path: str
    shape: tuple
    kind: str
    block: Optional[int] = None


DENSE = (("kernel", "kernel", "dense_kernel"), ("bias", "bias", "bias"))
NORM = (("scale", "gamma", "norm_scale"), ("bias", "beta", "norm_bias"))

# What a config needs a slot (or slot group) for, for the error of a format that has no tensor there.
NEEDED_FOR = {"class_token": "class_token=True", "distillation_token": "distillation_token=True",
              "register_tokens": "register_tokens > 0", "encoder_norm": "a final norm before pooling",
              "fc_norm": "pooling='avg-fcnorm'", "pre_logits": "representation_size",
              "attn.query.bias": "qkv_bias=True", "attn.key.bias": "qkv_bias=True",
              "attn.value.bias": "qkv_bias=True", "ls1": "layer_scale", "ls2": "layer_scale",
              "head_dist": "head='distilled'", "norm_pre": "pre_norm=True", "patch_embed.bias": "patch_bias=True",
              "map": "pooling='map'", "projection": "projection_size", "head": "num_classes > 0"}


def _layer(slot: str, layer: str, parts, shapes, block: Optional[int] = None) -> List[Variable]:
    return [Variable(f"{slot}.{part}", f"{layer}/{variable}", shape, kind, block)
            for (part, variable, kind), shape in zip(parts, shapes)]


def _norm(slot: str, layer: str, width: int, block: Optional[int] = None) -> List[Variable]:
    return _layer(slot, layer, NORM, ((width,), (width,)), block)


def _dense(slot: str, layer: str, fan_in: int, out: int, block: Optional[int] = None) -> List[Variable]:
    return _layer(slot, layer, DENSE, ((fan_in, out), (out,)), block)


def stem_variables(config) -> List[Variable]:
    """Patch embedding, prefix tokens and position embedding, in the order the builder creates them: the
    class and distillation tokens join before the position embeddings are added when they carry one
    (``prefix_position_embeddings``), after it otherwise; registers always join after."""
    d, p = config.hidden_size, config.patch_size
    found = _layer("patch_embed", "patch_embed", (("kernel", "kernel", "conv_kernel"), ("bias", "bias", "bias")),
                   ((p, p, 3, d), (d,)))[: 2 if config.patch_bias else 1]
    prefix = []
    if config.class_token:
        prefix.append(Variable("class_token", "class_token/token", (1, 1, d), "tensor"))
    if config.distillation_token:
        prefix.append(Variable("distillation_token", "distillation_token/tokens", (1, 1, d), "tensor"))
    position = [Variable("pos_embed", "pos_embed/embeddings", (1, config.num_position_embeddings, d), "tensor")]
    found += prefix + position if config.prefix_position_embeddings else position + prefix
    if config.register_tokens:
        found.append(Variable("register_tokens", "register_tokens/tokens", (1, config.register_tokens, d), "tensor"))
    return found + (_norm("norm_pre", "norm_pre", d) if config.pre_norm else [])


def block_variables(config, index: int) -> List[Variable]:
    """The variables of block ``index``, each layer's in the order Keras creates them."""
    d, m = config.hidden_size, config.mlp_size
    n = lambda part: block_name(index, part)  # noqa: E731
    found = _norm("norm1", n("norm1"), d, index) + _attention("attn", n("attn"), config, config.qkv_bias, index)
    scale = lambda which: ([Variable(which, f"{n(which)}/gamma", (d,), "tensor", index)]  # noqa: E731
                           if config.layer_scale is not None else [])
    found += scale("ls1") + _norm("norm2", n("norm2"), d, index)
    found += _dense("mlp.fc1", n("mlp_fc1"), d, 2 * m if config.mlp == "swiglu" else m, index)
    return found + _dense("mlp.fc2", n("mlp_fc2"), m, d, index) + scale("ls2")


def _attention(slot: str, layer: str, config, qkv_bias: bool, block: Optional[int] = None) -> List[Variable]:
    """Query, key and value kernels (and biases), then the output projection, of a multi-head attention."""
    d, h = config.hidden_size, config.num_heads
    found = []
    for part in ("query", "key", "value"):
        found.append(Variable(f"{slot}.{part}.kernel", f"{layer}/{part}_kernel", (d, h, d // h), "heads_in_kernel",
                              block))
        if qkv_bias:
            found.append(Variable(f"{slot}.{part}.bias", f"{layer}/{part}_bias", (h, d // h), "heads_bias", block))
    return found + [Variable(f"{slot}.out.kernel", f"{layer}/output_kernel", (h, d // h, d), "heads_out_kernel", block),
                    Variable(f"{slot}.out.bias", f"{layer}/output_bias", (d,), "bias", block)]


def map_head_variables(config) -> List[Variable]:
    """SigLIP's attention-pooling (MAP) head: the probe and its attention (biases always), then the
    LayerNorm and the MLP of its residual branch."""
    d, m = config.hidden_size, config.mlp_size
    found = [Variable("map.probe", "map_attn/probe", (1, 1, d), "tensor")] + _attention("map.attn", "map_attn", config,
                                                                                         True)
    return found + _norm("map.norm", "map_norm", d) + _dense("map.mlp.fc1", "map_mlp_fc1", d, m) \
        + _dense("map.mlp.fc2", "map_mlp_fc2", m, d)


def top_variables(config, include_top: bool = True) -> List[Variable]:
    """The final norm (``encoder_norm``, or ``fc_norm`` after pooling), pre-logits and the head(s), for a
    model with pooled outputs."""
    d = config.hidden_size
    norm = "fc_norm" if config.pooling == "avg-fcnorm" else "encoder_norm"
    found = _norm(norm, norm, d) + (map_head_variables(config) if config.pooling == "map" else [])
    if config.representation_size:
        found += _dense("pre_logits", "pre_logits", config.pooled_width, config.representation_size)
    if include_top and config.projection_size:
        width = config.representation_size or config.pooled_width
        found.append(Variable("projection.kernel", "projection/kernel", (width, config.projection_size), "dense_kernel"))
    return found + (head_variables(config) if include_top else [])


def head_variables(config) -> List[Variable]:
    """The classification head(s): ``head`` on the pooled representation, and ``head_dist`` on the
    distillation token for a distilled head -- what a new head (``num_classes=``) starts afresh; none for
    ``num_classes=0``."""
    if not config.num_classes:
        return []
    found = _dense("head", "head", config.embedding_width, config.num_classes)
    if config.head == "distilled":
        found += _dense("head_dist", "head_dist", config.hidden_size, config.num_classes)
    return found


def head_layers(config) -> List[str]:
    """Names of the layers that hold the head(s), in model order (``["head", "head_dist"]`` for DeiT's
    distilled head)."""
    return list(dict.fromkeys(variable.path.split("/")[0] for variable in head_variables(config)))


def variables(config, include_top: bool = True) -> List[Variable]:
    """Every variable of ``vit_zoo.build(config, include_top=include_top)`` with pooled outputs, in the
    model's variable order."""
    found = stem_variables(config)
    for index in range(config.num_layers):
        found += block_variables(config, index)
    return found + top_variables(config, include_top)


def slot_kinds() -> Dict[str, str]:
    """Every slot any config can have → its kind (the slots of a config with every option on)."""
    from vit_zoo.model.config import ViTConfig

    everything = ViTConfig(num_layers=1, distillation_token=True, register_tokens=1, layer_scale=1e-5,
                           head="distilled", pre_norm=True)
    # fc_norm, pre_logits, the MAP head and the projection exist only without the distilled pair of heads
    the_rest = [everything.replace(pooling=pooling, head="linear", representation_size=8, projection_size=4)
                for pooling in ("avg-fcnorm", "map")]
    return {v.slot: v.kind for config in (everything, *the_rest) for v in variables(config)}
