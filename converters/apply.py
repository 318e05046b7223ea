"""The one strict applier shared by every checkpoint format.

A format's mapping is a list of ``Row(target, sources, transform)``: ``target`` is a model variable path
(``"block_00_attn/query_kernel"``), ``sources`` the checkpoint keys it is made from and ``transform`` a
function of those arrays (see ``converters.transforms``). ``apply_rows`` checks everything first —
every model variable assigned exactly once, every checkpoint tensor consumed or deliberately ignored,
every shape equal — and only then assigns, so a failed load leaves the model untouched.
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Iterable, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from keras import ops

from vit_zoo.converters.checkpoint import Checkpoint, CheckpointError

SHOWN = 5  # names listed per kind of problem


def identity(array):
    return array


class Row(NamedTuple):
    """One model variable ← transform(*checkpoint tensors)."""

    target: str
    sources: Tuple[str, ...]
    transform: Callable[..., np.ndarray] = identity


def row(target: str, *sources: str, transform: Callable[..., np.ndarray] = identity) -> Row:
    return Row(target, tuple(sources), transform)


class ConversionError(CheckpointError):
    """The checkpoint does not fit the model; lists missing, unexpected and mis-shaped tensors."""


def model_variables(model) -> Dict[str, object]:
    """Every variable of a model by its path, e.g. ``{"head/kernel": <Variable (768, 1000)>}``."""
    return {variable.path: variable for variable in model.weights}


def apply_rows(model, rows: Sequence[Row], checkpoint: Checkpoint,
               ignored: Optional[Dict[str, str]] = None, absent_layers: Iterable[str] = (),
               keep_initialised: Iterable[str] = (), description: str = "") -> None:
    """Assign ``rows`` from ``checkpoint`` to ``model``, all or nothing.

    Args:
        ignored: ``{regex: reason}`` for checkpoint keys deliberately not used (fullmatch).
        absent_layers: layers the model was built without (``include_top=False`` drops "head"); rows
            targeting them are skipped and their sources count as consumed.
        keep_initialised: variable paths deliberately left at their initial value (a new head); their
            rows are skipped and their sources count as consumed.
    Raises:
        ConversionError listing missing, duplicated, unexpected and mis-shaped tensors.
    """
    variables = model_variables(model)
    ignored = ignored or {}
    absent_layers, keep_initialised = set(absent_layers), set(keep_initialised)
    assigned, consumed, problems = {}, set(), _Problems()
    for r in rows:
        consumed.update(r.sources)
        if r.target.split("/")[0] in absent_layers or r.target in keep_initialised:
            continue
        if r.target not in variables:
            problems.unknown_target.append(r.target)
        elif r.target in assigned:
            problems.duplicate.append(r.target)
        else:
            missing = [s for s in r.sources if s not in checkpoint]
            if missing:
                problems.missing.append(f"{r.target} ← {', '.join(missing)}")
                assigned[r.target] = None
                continue
            assigned[r.target] = _convert(r, checkpoint, variables[r.target], problems)
    for target in variables:
        if target not in assigned and target not in keep_initialised:
            problems.unassigned.append(target)
    problems.unexpected = [key for key in checkpoint.keys()
                           if key not in consumed and not any(re.fullmatch(p, key) for p in ignored)]
    if problems:
        raise ConversionError(problems.message(description or f"checkpoint {checkpoint.path.name!r}",
                                               model.name))
    for target, value in assigned.items():
        variable = variables[target]
        variable.assign(ops.cast(value, variable.dtype))


def _convert(r: Row, checkpoint: Checkpoint, variable, problems) -> Optional[np.ndarray]:
    for source in r.sources:
        kind = checkpoint.dtype(source)
        if not (kind.startswith("float") or kind == "bfloat16"):
            problems.misshaped.append(f"{source}: dtype {kind}, expected a floating-point tensor")
            return None
    try:
        value = np.asarray(r.transform(*(checkpoint.load(s) for s in r.sources)))
    except ValueError as error:  # a reshape that cannot apply is a shape problem of the checkpoint
        shapes = ", ".join(f"{s} {checkpoint.shape(s)}" for s in r.sources)
        problems.misshaped.append(f"{r.target}: cannot convert {shapes}: {error}")
        return None
    if tuple(value.shape) != tuple(variable.shape):
        shapes = ", ".join(f"{s} {checkpoint.shape(s)}" for s in r.sources)
        problems.misshaped.append(f"{r.target}: model has {tuple(variable.shape)}, checkpoint gives "
                                  f"{tuple(value.shape)} (from {shapes})")
        return None
    return value


class _Problems:
    def __init__(self):
        self.missing, self.unassigned, self.duplicate, self.unknown_target = [], [], [], []
        self.unexpected, self.misshaped = [], []

    def __bool__(self):
        return any(vars(self).values())

    def message(self, what: str, model_name: str) -> str:
        lines = [f"{what} does not fit model {model_name!r}; nothing was assigned:"]
        for label, names in (("missing in checkpoint", self.missing),
                             ("model weights no row assigns", self.unassigned),
                             ("assigned twice", self.duplicate),
                             ("rows for weights the model lacks", self.unknown_target),
                             ("unexpected (unused) in checkpoint", self.unexpected),
                             ("mis-shaped", self.misshaped)):
            if names:
                shown = "; ".join(names[:SHOWN]) + (f"; … ({len(names) - SHOWN} more)"
                                                   if len(names) > SHOWN else "")
                lines.append(f"  {label} ({len(names)}): {shown}")
        return "\n".join(lines)
