"""Published-weights load cost: first load (download + convert + cache) vs second load (the cache).

A random vit_jax ``.npz`` of the model (default vit-base-16) is served by a loopback ``http.server`` on
127.0.0.1; a manifest entry for it comes in through ``VIT_ZOO_MANIFEST`` with its storage URL rewritten
by ``VIT_ZOO_GCS_ENDPOINT``, and the cache is a temporary ``VIT_ZOO_HOME`` -- the real code path of
``vit_zoo.load(name, pretrained=TAG)``, no network. Each load runs in a fresh Python process, which
reports its wall time (imports excluded) and peak RSS (``ru_maxrss``); a process that only builds the
model at random is the baseline.

    python benchmarks/load.py
    python benchmarks/load.py --model vit-small-16 --repeat 3
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert import GiB, machine, run_child, write_npz  # noqa: E402  (benchmarks/convert.py)

TAG = "bench-loopback"
GCS = "https://storage.googleapis.com"
URL_PATH = "vit_models/vit_zoo_benchmark/{model}.npz"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def serve(directory: Path):
    """A threading HTTP server for ``directory`` on 127.0.0.1 (an ephemeral port); returns (server, url)."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def manifest_entry(model: str, config, path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return dict(tag=TAG, model=model, format="google-npz", url=f"{GCS}/{URL_PATH.format(model=model)}",
                sha256=digest.hexdigest(), size=path.stat().st_size, image_size=config.image_size[0],
                num_classes=config.num_classes, labels="imagenet1k", default=False, mean=[0.5] * 3,
                std=[0.5] * 3, pooling="token", license="apache-2.0",
                source="benchmarks/load.py: random weights served from 127.0.0.1")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="vit-base-16")
    parser.add_argument("--repeat", type=int, default=1, help="cached loads after the first")
    parser.add_argument("--dir", default=None, help="where to put the served file and the cache")
    args = parser.parse_args(argv)

    import vit_zoo  # the parent only reads the config; every measured load runs in a child

    config = vit_zoo.ViTConfig.from_name(args.model)
    print(machine())
    root = Path(tempfile.mkdtemp(prefix="vit_zoo_load_", dir=args.dir))
    served = root / "served"
    checkpoint = served / URL_PATH.format(model=args.model)
    checkpoint.parent.mkdir(parents=True)
    write_npz(checkpoint, config)
    manifest = root / "manifest.json"
    manifest.write_text(json.dumps({"schema_version": 1,
                                    "entries": [manifest_entry(args.model, config, checkpoint)]}))
    server, url = serve(served)
    saved_env = dict(os.environ)
    os.environ.update(VIT_ZOO_HOME=str(root / "home"), VIT_ZOO_MANIFEST=str(manifest),
                      VIT_ZOO_GCS_ENDPOINT=url, VIT_ZOO_PROGRESS="0", NO_PROXY="127.0.0.1,localhost")
    for name in ("VIT_ZOO_OFFLINE", "HF_HUB_OFFLINE", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        os.environ.pop(name, None)
    print(f"checkpoint {checkpoint.stat().st_size / GiB:.2f} GiB served at {url}; each row is a fresh "
          f"process; load s excludes imports\n")
    print("| load | s | peak RSS GiB | runtime RSS GiB | (peak − runtime) / fp32 params |")
    print("|---|---|---|---|---|")
    try:
        rows = [("build only (random init)", run_child("build", args.model))]
        _print(*rows[-1])
        first = run_child("pretrained", args.model, TAG)
        _print("first: download + convert + cache", first)
        cached = []
        for i in range(args.repeat):
            cached.append(run_child("pretrained", args.model, TAG))
            _print(f"cached #{i + 1}", cached[-1])
    finally:
        server.shutdown()
        server.server_close()
        os.environ.clear()
        os.environ.update(saved_env)
        shutil.rmtree(root, ignore_errors=True)
    best = min(r["load_s"] for r in cached)
    print(f"\nspeed-up of the cached load: {first['load_s'] / best:.1f}× ({first['load_s']:.1f} s → {best:.1f} s)")
    print(f"after: {machine()}")


def _print(label, r):
    peak, runtime, params = r["peak_rss_kib"] * 1024, r["import_rss_kib"] * 1024, r["params"] * 4
    print(f"| {label} | {r['load_s']:.1f} | {peak / GiB:.2f} | {runtime / GiB:.2f} | "
          f"{(peak - runtime) / params:.2f} |", flush=True)


if __name__ == "__main__":
    main()
