"""Plain-text tables for the command line: the variants, the published weights, the cache."""
from __future__ import annotations

from vit_zoo import ViTConfig


def format_table(header, rows) -> str:
    """Columns padded to their widest cell, a dashed rule under the header."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    lines = (header, tuple("-" * w for w in widths), *rows)
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)


def print_table(header, rows) -> None:
    print(format_table(header, rows))


def human_size(n: float) -> str:
    """``n`` bytes as ``"512 B"``, ``"2.0 KiB"``, ``"330.3 MiB"`` or ``"1.2 GiB"``."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _source(entry) -> str:
    if entry.get("hf_repo"):
        revision = entry.get("revision")
        return f"hf:{entry['hf_repo']}" + (f"@{revision}" if revision and revision != "main" else "")
    head = f" + {entry['head_url'].rsplit('/', 1)[1]}" if entry.get("head_url") else ""
    return entry["url"].replace("https://storage.googleapis.com/", "gs://") + head


def _outputs(entry) -> str:
    """The classes of a classifier; an image tower's embedding width ("embed 512"); "none" for a backbone."""
    if entry["num_classes"]:
        return str(entry["num_classes"])
    config = ViTConfig.from_name(entry["model"])
    return f"embed {config.embedding_width}" if config.num_classes == 0 else "none"


def _accuracy(entry) -> str:
    """ImageNet top-1 of the checkpoint's head, or an image tower's zero-shot top-1 ("76.04 0-shot")."""
    if entry.get("top1") is not None:
        return f"{entry['top1']:.2f}"
    return f"{entry['zero_shot_top1']:.2f} 0-shot" if entry.get("zero_shot_top1") is not None else "-"


def format_weights_table(entries) -> str:
    """``vit-zoo weights``: key (``*`` the default), format, resolution, classes, top-1, size, source."""
    rows = []
    for e in entries:
        flags = ("*" if e["default"] else "") + (" (zero head)" if e.get("zero_head") else "")
        size = human_size(e["size"]) if e.get("size") else (e.get("approx_size") or "?")
        rows.append((e["key"] + flags, e["format"], e["image_size"], _outputs(e), _accuracy(e), size, _source(e)))
    table = format_table(("weights", "format", "res", "outputs", "top1", "size", "source"), rows)
    return f"{table}\n{len(rows)} checkpoint(s); * marks the default of its model (pretrained=True)"


def format_cache_table(items, root) -> str:
    """``vit-zoo cache``: size, kind and cache-relative path of each ``CacheItem``, then the total."""
    if not items:
        return f"nothing cached under {root}"
    table = format_table(("size", "kind", "path"), [(human_size(i.size), i.kind, i.relative) for i in items])
    return f"{table}\n{human_size(sum(i.size for i in items))} in {len(items)} item(s) under {root}"
