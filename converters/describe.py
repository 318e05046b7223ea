"""A format's mapping, resolved for one model, as rows a reader checks one by one against a checkpoint's
key list: our weight, the source key(s), the transform (``vit-zoo mapping FORMAT MODEL``).

The rows are the ones the loader applies (``FORMAT.mapping(config, checkpoint)``); transforms are named
by the function that made them with its arguments (``fused_qkv_part(index=0, then=transpose)``), and a
legend gives each one's docstring. The format's deliberately ignored keys close the listing.

Example::

    >>> from vit_zoo.converters.describe import mapping_rows
    >>> from vit_zoo.model.config import ViTConfig
    >>> mapping_rows("timm", ViTConfig.from_name("vit-tiny-16"))[0]
    ('patch_embed/kernel', 'patch_embed.proj.weight', 'conv_to_keras')
"""
from __future__ import annotations

import inspect
from typing import Callable, List, Optional, Tuple

from vit_zoo.converters import formats
from vit_zoo.converters.apply import identity
from vit_zoo.converters.checkpoint import Checkpoint, open_checkpoint


def format_module(name: str):
    """The converter module of a format, by its ``NAME`` ("timm", "hf", "google-npz", ...) or module name."""
    found = {module.NAME: module for module in formats()}
    found.update({module.__name__.rpartition(".")[2]: module for module in formats()})
    if name not in found:
        names = sorted({module.NAME for module in formats()})
        raise ValueError(f"unknown checkpoint format {name!r}; the formats are {', '.join(names)}")
    return found[name]


def describe_transform(transform: Callable) -> str:
    """``"as stored"`` for the identity, else the transform's maker and its arguments, e.g.
    ``"split_heads_in(num_heads=12)"`` (None arguments and those at their default left out)."""
    if transform is identity:
        return "as stored"
    name = transform.__qualname__.split(".<locals>")[0]
    if not transform.__closure__:
        return name
    values = dict(zip(transform.__code__.co_freevars, (cell.cell_contents for cell in transform.__closure__)))
    maker = transform.__globals__.get(name)
    parameters = inspect.signature(maker).parameters if callable(maker) else {}
    order = list(parameters) if parameters else sorted(values)
    defaults = {key: p.default for key, p in parameters.items() if p.default is not inspect.Parameter.empty}
    shown = [f"{key}={describe_transform(values[key]) if callable(values[key]) else repr(values[key])}"
             for key in order if values.get(key) is not None and not (key in defaults and values[key] == defaults[key])]
    return f"{name}({', '.join(shown)})"


def mapping_rows(format_name: str, config, checkpoint=None) -> List[Tuple[str, str, str]]:
    """(our weight, source key(s), transform) of every row of ``format_name``'s mapping for ``config``
    (a ``ViTConfig`` or a variant name). ``checkpoint`` (a path or an open ``Checkpoint``): for formats
    whose layout depends on the file (Hugging Face PyTorch or TensorFlow names, big_vision's key prefix)."""
    _, _, rows = _resolved(format_name, config, checkpoint)
    return [(row.target, ", ".join(row.sources), describe_transform(row.transform)) for row in rows]


def describe_mapping(format_name: str, config, checkpoint=None) -> str:
    """The rows of ``mapping_rows`` as an aligned table, with a legend of the transforms and the format's
    ignored keys; ``print(describe_mapping("timm", "vit-base-16"))``."""
    module, config, resolved = _resolved(format_name, config, checkpoint)
    rows = [(row.target, ", ".join(row.sources), describe_transform(row.transform)) for row in resolved]
    header = ("our weight", "source key", "transform")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(2)]
    lines = [f"{module.NAME} mapping for {config.variant or 'the config'} "
             f"({config.num_layers} blocks, width {config.hidden_size}): {len(rows)} rows", ""]
    lines += [f"{a:{widths[0]}}  {b:{widths[1]}}  {c}".rstrip() for a, b, c in [header] + rows]
    legend = _legend(row.transform for row in resolved)
    if legend:
        lines += ["", "transforms:"] + [f"  {name}: {text}" for name, text in legend]
    ignored = getattr(module, "IGNORED", None) or {}
    if ignored:
        lines += ["", "source keys ignored (regex: reason):"] + [f"  {key}: {why}" for key, why in ignored.items()]
    return "\n".join(lines)


def _resolved(format_name: str, config, checkpoint):
    """(format module, ViTConfig, the mapping's rows)."""
    module = format_module(format_name)
    if isinstance(config, str):
        from vit_zoo.model.config import ViTConfig

        config = ViTConfig.from_name(config)
    if checkpoint is None or isinstance(checkpoint, Checkpoint):
        return module, config, _rows(module, config, checkpoint)
    with open_checkpoint(checkpoint) as opened:
        return module, config, _rows(module, config, opened)


def _rows(module, config, checkpoint: Optional[Checkpoint]):
    needs = list(inspect.signature(module.mapping).parameters.values())[1].default is inspect.Parameter.empty
    if checkpoint is None and needs:
        raise ValueError(f"the {module.NAME} mapping depends on the checkpoint's layout (its key names and "
                         f"shapes); pass a checkpoint of that format (checkpoint=PATH; --checkpoint PATH)")
    return module.mapping(config, checkpoint)


def _legend(transforms) -> List[Tuple[str, str]]:
    """(transform maker, first line of its docstring) of each transform used, makers' arguments included."""
    seen, stack = {}, list(transforms)
    while stack:
        transform = stack.pop()
        if transform is identity or not callable(transform):
            continue
        name = transform.__qualname__.split(".<locals>")[0]
        maker = transform.__globals__.get(name, transform)
        seen.setdefault(name, (inspect.getdoc(maker) or "").split("\n")[0])
        stack += [cell.cell_contents for cell in transform.__closure__ or () if callable(cell.cell_contents)]
    return sorted(seen.items())
