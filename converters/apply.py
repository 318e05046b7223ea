"""The one strict applier shared by every checkpoint format.

A format's mapping is a list of ``Row(target, sources, transform)``: ``target`` is a model variable path
(``"block_00_attn/query_kernel"``), ``sources`` the checkpoint keys it is made from and ``transform`` a
function of those arrays (see ``converters.transforms``). ``apply_rows`` works in two passes:

1. *Check*, reading no tensor data: every model variable assigned exactly once, every checkpoint tensor
   consumed or deliberately ignored, every source a floating-point tensor, and every row's transform run
   on zero-cost stand-ins of its sources' shapes (``np.zeros``, whose untouched pages are never
   committed) so that its result shape is compared with the variable's. Any problem raises one
   ``ConversionError`` before anything is assigned.
2. *Stream*: load, transform and assign one tensor at a time, releasing each, so converting holds the
   model plus one tensor in flight (the readers in ``converters.checkpoint`` read lazily).
"""
from __future__ import annotations

import re
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
from keras import ops

from vit_zoo.converters.checkpoint import Checkpoint
from vit_zoo.converters.errors import CheckpointError, ConversionError

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


def model_variables(model) -> Dict[str, object]:
    """Every variable of a model by its path, e.g. ``{"head/kernel": <Variable (768, 1000)>}``."""
    return {variable.path: variable for variable in model.weights}


def apply_rows(model, rows: Sequence[Row], checkpoint: Checkpoint,
               ignored: Optional[Dict[str, str]] = None, absent_layers: Iterable[str] = (),
               keep_initialised: Iterable[str] = (), description: str = "", snapshot: bool = True) -> None:
    """Assign ``rows`` from ``checkpoint`` to ``model``, all or nothing, streaming one tensor at a time.

    Everything that can be known without reading tensor data is checked first (see the module
    docstring); only a failure while reading the data itself (a file changed or damaged after it was
    opened: a truncated safetensors, an npz member with a bad CRC, an I/O error) can happen once
    assignment has begun. For that case ``snapshot`` chooses how "the model is left untouched" holds:

    - ``snapshot=True`` (default, for a model whose current weights matter): each variable's value is
      copied to host memory just before it is first overwritten; on an error every variable assigned so
      far is restored from its copy and the error re-raised. Peak memory is the model plus these copies
      (at most one more model, reached only at the last row) plus one tensor in flight -- the "model +
      one copy" budget, spent on the old weights instead of on a converted copy of the checkpoint.
    - ``snapshot=False``: no copies (peak: the model plus one tensor in flight). For a model that the
      caller discards when loading fails -- a freshly built one, as ``vit_zoo.weights.convert.load_checkpoint``
      builds -- on an error its weights are partly assigned and it must not be used.

    Args:
        ignored: ``{regex: reason}`` for checkpoint keys deliberately not used (fullmatch).
        absent_layers: layers the model was built without (``include_top=False`` drops "head"); rows
            targeting them are skipped and their sources count as consumed.
        keep_initialised: variable paths deliberately left at their initial value (a new head); their
            rows are skipped and their sources count as consumed.
        description: how errors name the checkpoint (default ``checkpoint 'FILE'``).
        snapshot: keep the old values of assigned variables until the last one is assigned (above).
    Raises:
        ConversionError listing missing, duplicated, unexpected and mis-shaped tensors (nothing assigned).
        CheckpointError when reading a tensor fails during assignment (restored with ``snapshot``).
    """
    variables = model_variables(model)
    ignored = ignored or {}
    absent_layers, keep_initialised = set(absent_layers), set(keep_initialised)
    what = description or f"checkpoint {checkpoint.path.name!r}"
    planned: Dict[str, Optional[Row]] = {}
    consumed, problems = set(), _Problems()
    for r in rows:
        consumed.update(r.sources)
        if r.target.split("/")[0] in absent_layers or r.target in keep_initialised:
            continue
        if r.target not in variables:
            problems.unknown_target.append(r.target)
        elif r.target in planned:
            problems.duplicate.append(r.target)
        else:
            missing = [s for s in r.sources if s not in checkpoint]
            if missing:
                problems.missing.append(f"{r.target} ← {', '.join(missing)}")
                planned[r.target] = None
                continue
            planned[r.target] = r if _fits(r, checkpoint, variables[r.target], problems) else None
    for target in variables:
        if target not in planned and target not in keep_initialised:
            problems.unassigned.append(target)
    problems.unexpected = [key for key in checkpoint.keys()
                           if key not in consumed and not any(re.fullmatch(p, key) for p in ignored)]
    if problems:
        raise ConversionError(problems.message(what, model.name))
    _stream(planned, checkpoint, variables, what, snapshot)


def _fits(r: Row, checkpoint: Checkpoint, variable, problems) -> bool:
    """Check one row without reading data: float sources, and the transform's result shape."""
    for source in r.sources:
        kind = checkpoint.dtype(source)
        if not (kind.startswith("float") or kind == "bfloat16"):
            problems.misshaped.append(f"{source}: dtype {kind}, expected a floating-point tensor")
            return False
    try:
        shape = _result_shape(r, checkpoint)
    except ValueError as error:  # a reshape that cannot apply is a shape problem of the checkpoint
        shapes = ", ".join(f"{s} {checkpoint.shape(s)}" for s in r.sources)
        problems.misshaped.append(f"{r.target}: cannot convert {shapes}: {error}")
        return False
    if shape != tuple(variable.shape):
        shapes = ", ".join(f"{s} {checkpoint.shape(s)}" for s in r.sources)
        problems.misshaped.append(f"{r.target}: model has {tuple(variable.shape)}, checkpoint gives "
                                  f"{shape} (from {shapes})")
        return False
    return True


def _result_shape(r: Row, checkpoint: Checkpoint) -> tuple:
    """The shape ``r.transform`` gives, computed on stand-ins: zero arrays of the sources' shapes and of
    the dtypes ``Checkpoint.load`` returns. Transforms only move and reshape data, so the result shape
    does not depend on the values. ``np.zeros`` gets its memory from calloc (fresh, untouched pages), so
    a stand-in costs nothing until a transform copies it; that copy is one tensor, freed at once."""
    if r.transform is identity and len(r.sources) == 1:
        return tuple(checkpoint.shape(r.sources[0]))
    stand_ins = [np.zeros(checkpoint.shape(s), _loaded_dtype(checkpoint.dtype(s))) for s in r.sources]
    return tuple(np.shape(r.transform(*stand_ins)))


def _loaded_dtype(kind: str):
    return np.float32 if kind in ("float16", "bfloat16") else np.dtype(kind)  # half is widened on load


def _stream(planned: Dict[str, Row], checkpoint: Checkpoint, variables, what: str, snapshot: bool):
    old: List[Tuple[object, np.ndarray]] = []
    current = None
    try:
        for target, r in planned.items():
            current, variable = r, variables[target]
            value = np.asarray(r.transform(*(checkpoint.load(s) for s in r.sources)))
            if tuple(value.shape) != tuple(variable.shape):  # the check pass makes this unreachable
                raise ValueError(f"{target}: transform gave {tuple(value.shape)} on the data but "
                                 f"{tuple(variable.shape)} on stand-ins")
            if snapshot:
                old.append((variable, np.array(variable.numpy(), copy=True)))
            variable.assign(ops.cast(value, variable.dtype))
            del value  # release before the next tensor is read
    except BaseException as error:
        restored = len(old)
        for variable, value in reversed(old):
            variable.assign(value)
        old.clear()
        if not isinstance(error, Exception):  # KeyboardInterrupt, SystemExit: restored, then re-raised
            raise
        state = (f"the {restored} weights assigned before it were restored" if snapshot
                 else "the model is partly assigned: discard it")
        raise CheckpointError(f"{what}: loading {', '.join(current.sources)} into {current.target} "
                              f"failed after the checks passed ({type(error).__name__}: {error}); {state}. Was "
                              f"the file changed or damaged while loading? Compare its size and sha256 "
                              f"with the source's") from error


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
