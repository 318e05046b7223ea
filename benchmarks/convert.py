"""Checkpoint conversion cost: seconds and peak memory of ``vit_zoo.load(weights=PATH)`` per format.

For each model (default vit-base-16 and vit-huge-14) this writes a random checkpoint in each format's
on-disk layout -- a vit_jax ``.npz``, a timm ``model.safetensors`` (+ timm's config.json), a Hugging Face
directory (``model.safetensors`` + ``config.json``) -- streaming one tensor at a time, then converts it
in a fresh Python process and reports that process's wall time and peak RSS (``ru_maxrss``). A baseline
process that only imports ``vit_zoo`` and builds the same model at random shows what the runtime and the
model cost by themselves, so the table separates the conversion's own overhead.

    python benchmarks/convert.py                                  # both models, all formats
    python benchmarks/convert.py --models vit-base-16 --formats timm,hf

Checkpoints go to a temporary directory (``--dir``; a ViT-H/14 file is ~2.5 GB) and each is deleted
once converted. The issue's budget (issue 4, "Cost"): peak while converting ViT-H/14 within about 2x its
fp32 parameter bytes (model + one checkpoint copy). Ratios are given both for the whole process and
for the part above the imported runtime (TensorFlow + Keras + vit_zoo, measured in the same process).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import layouts  # noqa: E402  (tests/layouts.py: the on-disk layout of each format, written once)

FORMATS = ("google-npz", "timm", "hf")
MODELS = ("vit-base-16", "vit-huge-14")
GiB = 2 ** 30

# Runs in a fresh interpreter: argv = [mode, model name, ARG]; mode "build" (random init, ARG ""),
# "convert" (ARG: a checkpoint path for weights=) or "pretrained" (ARG: a manifest tag). Prints one JSON line.
CHILD = r"""
import json, os, resource, sys, time
start = time.perf_counter()
import keras, vit_zoo
imported = time.perf_counter()
def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
import_rss = rss_kib()
mode, name, path = sys.argv[1:4]
if mode == "build":
    model = vit_zoo.load(name)
elif mode == "pretrained":
    model = vit_zoo.load(name, pretrained=path)
else:
    model = vit_zoo.load(name, weights=path)
done = time.perf_counter()
print(json.dumps({"import_s": imported - start, "load_s": done - imported, "import_rss_kib": import_rss,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "params": int(model.count_params())}))
"""


# ------------------------------------------------------------------------------------------------------
# Writers: the layouts of tests/layouts.py (one table per format), one tensor in memory at a time.


def write_npz(path: Path, config, seed=0) -> Path:
    """The vit_jax ``.npz`` of ``config`` as ``np.savez`` writes it (a stored zip of ``KEY.npy`` members),
    member by member."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
        for key, value in layouts.stream(layouts.vit_jax(config), config, seed):
            with archive.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, value, allow_pickle=False)
    return path


def write_safetensors(path: Path, layout, config, seed=0) -> Path:
    """F32 safetensors of ``layout``: u64 header size, JSON header padded to 8 bytes, tensors in order."""
    header, offset = {}, 0
    for key, shape in layouts.shapes(layout, config).items():
        size = int(np.prod(shape)) * 4
        header[key] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded)
        for _, value in layouts.stream(layout, config, seed):
            value.astype("<f4").tofile(f)
    return path


def timm_architecture(c) -> str:
    size = c.variant.split("-")[1]
    return f"vit_{size}_patch{c.patch_size}_{c.image_size[0]}"


def write_checkpoint(fmt: str, c, directory: Path) -> Path:
    """The checkpoint of ``fmt`` for config ``c`` under ``directory``; returns what ``weights=`` takes."""
    if fmt == "google-npz":
        return write_npz(directory / f"{c.variant}.npz", c)
    folder = directory / f"{c.variant}-{fmt}"
    folder.mkdir()
    if fmt == "timm":
        (folder / "config.json").write_text(json.dumps({
            "architecture": timm_architecture(c), "num_classes": c.num_classes, "global_pool": "token",
            "pretrained_cfg": {"input_size": [3, *c.image_size], "mean": [0.5] * 3, "std": [0.5] * 3,
                               "num_classes": c.num_classes}}))
        return write_safetensors(folder / "model.safetensors", layouts.timm(c), c)
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": c.hidden_size,
        "num_hidden_layers": c.num_layers, "num_attention_heads": c.num_heads,
        "intermediate_size": c.mlp_size, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
        "image_size": c.image_size[0], "patch_size": c.patch_size, "num_channels": 3, "qkv_bias": True,
        "id2label": {str(i): f"class_{i}" for i in range(c.num_classes)},
        "label2id": {f"class_{i}": i for i in range(c.num_classes)}}))
    write_safetensors(folder / "model.safetensors", layouts.hf_torch(c), c)
    return folder


# ------------------------------------------------------------------------------------------------------
def run_child(mode: str, name: str, path="") -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, mode, name, str(path)], capture_output=True,
                            text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if result.returncode:
        raise RuntimeError(f"{mode} {name} {path} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def machine() -> str:
    cpu = "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (f"CPU: {cpu} ({os.cpu_count()} logical cores); load average (1, 5, 15 min): {load}; "
            f"Python {platform.python_version()}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated variant names")
    parser.add_argument("--formats", default=",".join(FORMATS), help=f"comma-separated, of {FORMATS}")
    parser.add_argument("--dir", default=None, help="where to write the checkpoints (default: a temp dir)")
    args = parser.parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    unknown = set(formats) - set(FORMATS)
    if unknown:
        parser.error(f"unknown formats {sorted(unknown)}; choose from {FORMATS}")

    import vit_zoo  # the parent only reads configs; every measured load runs in a child

    print(machine())
    print(f"vit_zoo {vit_zoo.__version__}; each row is a fresh process; RSS in GiB\n")
    print("| model | format | checkpoint GiB | fp32 params GiB | load s | peak RSS | runtime RSS | peak / params "
          "| (peak − runtime) / params | overhead vs build |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    root = Path(tempfile.mkdtemp(prefix="vit_zoo_convert_", dir=args.dir))
    try:
        for name in [m for m in args.models.split(",") if m]:
            config = vit_zoo.ViTConfig.from_name(name)
            base = run_child("build", name)
            _row(name, "(build only)", None, base, base)
            for fmt in formats:
                path = write_checkpoint(fmt, config, root)
                size = sum(p.stat().st_size for p in ([path] if path.is_file() else path.iterdir()))
                _row(name, fmt, size, run_child("convert", name, path), base)
                shutil.rmtree(path) if path.is_dir() else path.unlink()
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"\nafter: {machine()}")


def _row(name, fmt, size, r, base):
    params = r["params"] * 4
    peak, runtime = r["peak_rss_kib"] * 1024, r["import_rss_kib"] * 1024
    overhead = (r["peak_rss_kib"] - base["peak_rss_kib"]) * 1024
    print(f"| {name} | {fmt} | {'' if size is None else f'{size / GiB:.2f}'} | {params / GiB:.2f} | "
          f"{r['load_s']:.1f} | {peak / GiB:.2f} | {runtime / GiB:.2f} | {peak / params:.2f} | "
          f"{(peak - runtime) / params:.2f} | {overhead / GiB:+.2f} GiB ({overhead / params:+.2f}×) |", flush=True)


if __name__ == "__main__":
    main()
