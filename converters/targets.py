"""The model side of every conversion: each variable of a vit_zoo model, named by a format-neutral slot.

The variables, their slots, shapes and kinds are the architecture spec's (``vit_zoo.model.spec``, which
also lists the slots). A format's mapping is a table ``slot → (source key pattern, transform)`` (``{i}`` in
a pattern is the block index); ``rows`` zips it with the spec's variables of a config -- every variable of
that model, once -- into the applier's rows. So no format spells our variable paths or loops over blocks
itself. ``table`` writes a format's table from its module names and its container's convention for each
kind of slot (``SLOT_KINDS``: a conv kernel, a dense kernel, a head-split attention kernel, a norm scale, …).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Optional, Tuple

from vit_zoo.converters.apply import Row, identity
from vit_zoo.converters.errors import ConversionError
from vit_zoo.model import spec
from vit_zoo.model.spec import Variable as Target  # noqa: F401 (a target is a spec variable)

# A format's entry for one slot: the source key (pattern) and the transform to our shape (None: as stored).
Source = Tuple[str, Optional[Callable]]

# Every slot → its kind: what a container must do to bring such a tensor to our shape (see transforms).
SLOT_KINDS = spec.slot_kinds()

# What a config needs a slot for, for the error of a format that has no tensor there.
NEEDED_FOR = spec.NEEDED_FOR

stem_targets, block_targets = spec.stem_variables, spec.block_variables


def top_targets(config) -> List[Target]:
    """The final norm (``encoder_norm``, or ``fc_norm`` after pooling), pre-logits and head(s)."""
    return spec.top_variables(config)


def model_targets(config) -> List[Target]:
    """Every variable of a model built from ``config`` with its head, in the model's variable order."""
    return spec.variables(config)


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
