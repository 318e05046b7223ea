"""The architecture spec: every variable of the model a ``ViTConfig`` describes, without Keras.

This is the one description of what a model holds. The builder (``vit_zoo.model.builder``) creates exactly
these variables, in this order (a test holds it to that); converters address them by their format-neutral
*slot* (``converters.targets`` zips each format's table ``slot → (source key, transform)`` with them); the
parameter counts (``vit_zoo.model.stats``) are their sizes summed. A new block option is one entry here,
its layer in the builder and its rows in each format's table.

Slots (our variable, shape; ``[…]`` when the config has it; D width, M MLP width, H heads, Dh = D / H):
    patch_embed.kernel, .bias       patch_embed/kernel (P, P, 3, D), bias (D,)
    class_token                     class_token/token (1, 1, D)                            [class_token]
    distillation_token              distillation_token/tokens (1, 1, D)            [distillation_token]
    pos_embed                       pos_embed/embeddings (1, E + gh*gw, D); E embedded prefix tokens,
                                    (gh, gw) the stored grid (``ViTConfig.stored_position_grid``)
    register_tokens                 register_tokens/tokens (1, R, D)                    [register_tokens]
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
    pre_logits.kernel, .bias        pre_logits/kernel (D, R), bias (R,)          [representation_size]
    head.kernel, .bias              head/kernel (D, 2D for token-mean, or R; C), bias (C,)  [include_top]
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
              "head_dist": "head='distilled'"}


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
                   ((p, p, 3, d), (d,)))
    prefix = []
    if config.class_token:
        prefix.append(Variable("class_token", "class_token/token", (1, 1, d), "tensor"))
    if config.distillation_token:
        prefix.append(Variable("distillation_token", "distillation_token/tokens", (1, 1, d), "tensor"))
    position = [Variable("pos_embed", "pos_embed/embeddings", (1, config.num_position_embeddings, d), "tensor")]
    found += prefix + position if config.prefix_position_embeddings else position + prefix
    if config.register_tokens:
        found.append(Variable("register_tokens", "register_tokens/tokens", (1, config.register_tokens, d), "tensor"))
    return found


def block_variables(config, index: int) -> List[Variable]:
    """The variables of block ``index``, each layer's in the order Keras creates them."""
    d, m, h = config.hidden_size, config.mlp_size, config.num_heads
    n = lambda part: block_name(index, part)  # noqa: E731
    found = _norm("norm1", n("norm1"), d, index)
    for part in ("query", "key", "value"):
        found.append(Variable(f"attn.{part}.kernel", f"{n('attn')}/{part}_kernel", (d, h, d // h),
                              "heads_in_kernel", index))
        if config.qkv_bias:
            found.append(Variable(f"attn.{part}.bias", f"{n('attn')}/{part}_bias", (h, d // h), "heads_bias", index))
    found += [Variable("attn.out.kernel", f"{n('attn')}/output_kernel", (h, d // h, d), "heads_out_kernel", index),
              Variable("attn.out.bias", f"{n('attn')}/output_bias", (d,), "bias", index)]
    scale = lambda which: ([Variable(which, f"{n(which)}/gamma", (d,), "tensor", index)]  # noqa: E731
                           if config.layer_scale is not None else [])
    found += scale("ls1") + _norm("norm2", n("norm2"), d, index)
    found += _dense("mlp.fc1", n("mlp_fc1"), d, 2 * m if config.mlp == "swiglu" else m, index)
    return found + _dense("mlp.fc2", n("mlp_fc2"), m, d, index) + scale("ls2")


def top_variables(config, include_top: bool = True) -> List[Variable]:
    """The final norm (``encoder_norm``, or ``fc_norm`` after pooling), pre-logits and the head(s), for a
    model with pooled outputs."""
    d = config.hidden_size
    norm = "fc_norm" if config.pooling == "avg-fcnorm" else "encoder_norm"
    found = _norm(norm, norm, d)
    if config.representation_size:
        found += _dense("pre_logits", "pre_logits", config.pooled_width, config.representation_size)
    return found + (head_variables(config) if include_top else [])


def head_variables(config) -> List[Variable]:
    """The classification head(s): ``head`` on the pooled representation, and ``head_dist`` on the
    distillation token for a distilled head -- what a new head (``num_classes=``) starts afresh."""
    found = _dense("head", "head", config.representation_size or config.pooled_width, config.num_classes)
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
                           head="distilled")
    # fc_norm and pre_logits exist only without the distilled pair of heads
    the_rest = everything.replace(pooling="avg-fcnorm", head="linear", representation_size=8)
    return {v.slot: v.kind for config in (everything, the_rest) for v in variables(config)}
