"""The model side of every conversion: each variable of a vit_zoo model, named by a format-neutral slot.

A format's mapping is a table ``slot → (source key pattern, transform)`` (``{i}`` in a pattern is the
block index); ``rows`` zips it with the targets of a config -- every variable of that model, once -- into
the applier's rows. So no format spells our variable paths or loops over blocks itself. ``table`` writes
a format's table from its module names and its container's convention for each kind of slot
(``SLOT_KINDS``: a conv kernel, a dense kernel, a head-split attention kernel, a norm scale, …).

Slots (our variable, shape; ``[…]`` when the config has it; layer names of ``vit_zoo.model.builder``):
    patch_embed.kernel, .bias         patch_embed/kernel (P, P, 3, D), bias (D,)
    class_token                       class_token/token (1, 1, D)                         [class_token]
    pos_embed                         pos_embed/embeddings (1, T, D)
    norm1.scale, norm1.bias           block_{i:02d}_norm1/gamma, beta (D,)
    attn.query.kernel, .bias          block_{i:02d}_attn/query_kernel (D, H, Dh), query_bias (H, Dh)
    attn.key.…, attn.value.…          likewise; the biases only with qkv_bias
    attn.out.kernel, .bias            block_{i:02d}_attn/output_kernel (H, Dh, D), output_bias (D,)
    norm2.scale, norm2.bias           block_{i:02d}_norm2/gamma, beta (D,)
    mlp.fc1.kernel, .bias             block_{i:02d}_mlp_fc1/kernel (D, M), bias (M,)
    mlp.fc2.kernel, .bias             block_{i:02d}_mlp_fc2/kernel (M, D), bias (D,)
    encoder_norm.scale, .bias         encoder_norm/gamma, beta (D,)                 [pooling not avg-fcnorm]
    fc_norm.scale, .bias              fc_norm/gamma, beta (D,)                      [pooling avg-fcnorm]
    pre_logits.kernel, .bias          pre_logits/kernel (D, R), bias (R,)           [representation_size]
    head.kernel, .bias                head/kernel (D or R, C), bias (C,)
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

from vit_zoo.converters.apply import Row, identity
from vit_zoo.converters.errors import ConversionError
from vit_zoo.model.builder import block_name

# A format's entry for one slot: the source key (pattern) and the transform to our shape (None: as stored).
Source = Tuple[str, Optional[Callable]]

DENSE = (("kernel", "kernel"), ("bias", "bias"))
NORM = (("scale", "gamma"), ("bias", "beta"))



def _slot_kinds() -> Dict[str, str]:
    kinds = {"patch_embed.kernel": "conv_kernel", "patch_embed.bias": "bias", "class_token": "tensor",
             "pos_embed": "tensor", "attn.out.kernel": "heads_out_kernel", "attn.out.bias": "bias"}
    for part in ("query", "key", "value"):
        kinds[f"attn.{part}.kernel"], kinds[f"attn.{part}.bias"] = "heads_in_kernel", "heads_bias"
    for norm in ("norm1", "norm2", "encoder_norm", "fc_norm"):
        kinds[f"{norm}.scale"], kinds[f"{norm}.bias"] = "norm_scale", "norm_bias"
    for dense in ("mlp.fc1", "mlp.fc2", "pre_logits", "head"):
        kinds[f"{dense}.kernel"], kinds[f"{dense}.bias"] = "dense_kernel", "bias"
    return kinds


# Every slot → its kind: what a container must do to bring such a tensor to our shape (see transforms).
SLOT_KINDS = _slot_kinds()

# What a config needs a slot for, for the error of a format that has no tensor there.
NEEDED_FOR = {"class_token": "class_token=True", "encoder_norm": "a final norm before pooling",
              "fc_norm": "pooling='avg-fcnorm'", "pre_logits": "representation_size",
              "attn.query.bias": "qkv_bias=True", "attn.key.bias": "qkv_bias=True",
              "attn.value.bias": "qkv_bias=True"}


class Target(NamedTuple):
    """One model variable: its slot ("attn.query.kernel"), its path ("block_03_attn/query_kernel") and its
    block index (None outside the blocks)."""

    slot: str
    path: str
    block: Optional[int] = None


def _layer(slot_prefix: str, layer: str, variables, block: Optional[int] = None) -> List[Target]:
    return [Target(f"{slot_prefix}.{slot}", f"{layer}/{variable}", block) for slot, variable in variables]


def stem_targets(config) -> List[Target]:
    """Patch embedding, class token, position embedding."""
    targets = _layer("patch_embed", "patch_embed", DENSE)
    if config.class_token:
        targets.append(Target("class_token", "class_token/token"))
    return targets + [Target("pos_embed", "pos_embed/embeddings")]


def block_targets(config, index: int) -> List[Target]:
    """The variables of block ``index``, each layer's in the order Keras creates them."""
    attention = []
    for part in ("query", "key", "value"):
        attention += [(f"{part}.kernel", f"{part}_kernel")] + ([(f"{part}.bias", f"{part}_bias")]
                                                              if config.qkv_bias else [])
    attention += [("out.kernel", "output_kernel"), ("out.bias", "output_bias")]
    return (_layer("norm1", block_name(index, "norm1"), NORM, index)
            + _layer("attn", block_name(index, "attn"), attention, index)
            + _layer("norm2", block_name(index, "norm2"), NORM, index)
            + _layer("mlp.fc1", block_name(index, "mlp_fc1"), DENSE, index)
            + _layer("mlp.fc2", block_name(index, "mlp_fc2"), DENSE, index))


def top_targets(config) -> List[Target]:
    """The final norm (``encoder_norm``, or ``fc_norm`` after pooling), pre-logits and head."""
    norm = "fc_norm" if config.pooling == "avg-fcnorm" else "encoder_norm"
    targets = _layer(norm, norm, NORM)
    if config.representation_size:
        targets += _layer("pre_logits", "pre_logits", DENSE)
    return targets + _layer("head", "head", DENSE)


def model_targets(config) -> List[Target]:
    """Every variable of a model built from ``config`` with its head, in the model's variable order."""
    targets = stem_targets(config)
    for index in range(config.num_layers):
        targets += block_targets(config, index)
    return targets + top_targets(config)


def table(modules: Mapping[str, str], kinds: Mapping[str, Tuple[Optional[str], Optional[Callable]]],
          key: Callable[[str, Optional[str]], str]) -> Dict[str, Source]:
    """A format's table from its names: ``modules`` maps a slot less its parameter ("attn.query",
    "norm1"; "class_token" and "pos_embed" whole) to the source module (pattern); ``kinds`` maps each
    slot kind to (the container's parameter name, or None for a bare tensor; the transform, or None);
    ``key(module, parameter)`` spells the source key. Slots of modules not named are left out."""
    found = {}
    for slot, kind in SLOT_KINDS.items():
        module = modules.get(slot, modules.get(slot.rpartition(".")[0]))
        if module is not None:
            parameter, transform = kinds[kind]
            found[slot] = (key(module, parameter), transform)
    return found


def rows(config, table: Mapping[str, Source], layout: str) -> List[Row]:
    """The applier's rows: each target of ``config`` ← its slot's source in ``table``.

    Raises:
        ConversionError naming the slot when ``table`` (the ``layout``, e.g. "vit_jax") has no tensor for
        a variable the config needs (a vit_jax checkpoint has no fc_norm).
    """
    found = []
    for target in model_targets(config):
        if target.slot not in table:
            group = target.slot if target.slot in NEEDED_FOR else target.slot.rsplit(".", 1)[0]
            raise ConversionError(f"a {layout} checkpoint has no tensor for {target.path} (slot "
                                  f"{target.slot!r}), which the config needs for "
                                  f"{NEEDED_FOR.get(group, group)}; use a config that this layout describes")
        pattern, transform = table[target.slot]
        found.append(Row(target.path, (pattern.format(i=target.block),), transform or identity))
    return found
