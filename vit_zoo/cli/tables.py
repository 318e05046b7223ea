"""Plain-text tables for the command line: the variants, the published weights, the cache."""
from __future__ import annotations


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


def format_weights_table(entries) -> str:
    """``vit-zoo weights``: key (``*`` the default), format, resolution, classes, top-1, size, source."""
    rows = []
    for e in entries:
        flags = ("*" if e["default"] else "") + (" (zero head)" if e.get("zero_head") else "")
        size = human_size(e["size"]) if e.get("size") else (e.get("approx_size") or "?")
        rows.append((e["key"] + flags, e["format"], e["image_size"], e["num_classes"] or "none",
                     f"{e['top1']:.2f}" if e.get("top1") is not None else "-", size, _source(e)))
    table = format_table(("weights", "format", "res", "classes", "top1", "size", "source"), rows)
    return f"{table}\n{len(rows)} checkpoint(s); * marks the default of its model (pretrained=True)"


def format_cache_table(items, root) -> str:
    """``vit-zoo cache``: size, kind and cache-relative path of each ``CacheItem``, then the total."""
    if not items:
        return f"nothing cached under {root}"
    table = format_table(("size", "kind", "path"), [(human_size(i.size), i.kind, i.relative) for i in items])
    return f"{table}\n{human_size(sum(i.size for i in items))} in {len(items)} item(s) under {root}"
