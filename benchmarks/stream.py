#!/usr/bin/env python
"""Streaming over image files: ``vit_zoo.predict`` (what ``vit-zoo predict`` runs) and
``vit_zoo.use.embedding.embed`` (``vit-zoo embed``) over ``--files`` JPEG files, against the same model's
in-memory throughput (``model.predict`` on an array already decoded and resized), with the peak resident
memory of each run -- bounded memory means it does not grow with the number of files.

Each path runs in its own process on the same files (photo-like 500x375 JPEGs written once, or
``--folder``). Targets (issue 13): streaming ≥ 90 % of the in-memory throughput; peak memory flat in
the number of files (compare a run with ``--files 1000`` and one with ``--files 10000``).

Usage:
  python benchmarks/stream.py --files 10000                 # ViT-B/16 fp32, batch 32 (hours on 2 cores)
  python benchmarks/stream.py --files 10000 --precision bf16
  python benchmarks/stream.py --model vit-tiny-16 --files 500 --batch 16    # a quick check
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import infer_workers  # noqa: E402

HERE = os.path.abspath(__file__)
PATHS = ("in-memory", "predict-files", "embed-files")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(spec):
    import vit_zoo

    dtype = "mixed_bfloat16" if spec["precision"] == "bf16" else None
    batch, path = spec["batch"], spec["path"]
    files = sorted(os.path.join(spec["folder"], name) for name in os.listdir(spec["folder"]))[:spec["files"]]
    if path == "embed-files":
        from vit_zoo.use.embedding import embed

        model = vit_zoo.load(spec["model"], dtype=dtype, include_top=False, pooling="token")
        with tempfile.TemporaryDirectory() as out:
            embed(model, files[:batch], output=os.path.join(out, "warm.h5"), batch_size=batch, progress=False)
            rss_before = peak_rss_mb()
            start = time.perf_counter()
            embed(model, files, output=os.path.join(out, "all.h5"), batch_size=batch, progress=False)
            seconds = time.perf_counter() - start
    else:
        model = vit_zoo.load(spec["model"], dtype=dtype)
        labels = [str(i) for i in range(model.output_shape[-1])]
        if path == "predict-files":
            from vit_zoo.use.prediction import predict

            predict(model, files[:batch], labels=labels, batch_size=batch)  # compile outside the timing
            rss_before = peak_rss_mb()
            start = time.perf_counter()
            predict(model, files, labels=labels, batch_size=batch)
            seconds = time.perf_counter() - start
        else:  # in-memory: already decoded and resized, model.predict over an array of a few batches
            from vit_zoo.use.preprocessing import preprocess

            pixels = preprocess(files[:min(len(files), 4 * batch)], weights=model)
            model.predict(pixels[:batch], batch_size=batch, verbose=0)
            rss_before = peak_rss_mb()
            result = common.measure(lambda: model.predict(pixels, batch_size=batch, verbose=0), len(pixels),
                                    spec["min_time"], 1)
            common.emit(path=path, files=len(pixels), rate=result["rate"], seconds=len(pixels) / result["rate"],
                        peak_rss_mb=peak_rss_mb(), rss_before_mb=rss_before)
            return
    common.emit(path=path, files=len(files), rate=len(files) / seconds, seconds=seconds, peak_rss_mb=peak_rss_mb(),
                rss_before_mb=rss_before)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="vit-base-16")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--files", type=int, default=10000)
    parser.add_argument("--folder", help="a folder of images to use (default: JPEGs written to a temp folder)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    common.add_run_arguments(parser, min_time=20.0, repeats=1)
    args = parser.parse_args(argv)
    if args.worker:
        worker(json.loads(args.worker))
        return

    facts, load_before = common.print_machine(args.max_load, args.wait)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder
        if folder is None:
            folder = scratch
            print(f"wrote {len(write_files(args.files, folder))} JPEG files (500x375) to a temporary folder")
        records = []
        for path in args.paths:
            spec = dict(path=path, model=args.model, precision=args.precision, files=args.files, folder=folder,
                        batch=args.batch, min_time=args.min_time)
            records += common.run_worker(HERE, spec, timeout_s=24 * 3600)
    for record in records:
        if "error" in record:
            print(f"  ! {record.get('path')}: {record['error']}")
    rates = {r["path"]: r for r in records if "rate" in r}
    print(f"\n## Streaming {args.files} files, {args.model} {args.precision}, batch {args.batch}\n")
    rows = [dict(path=p, files=r["files"], img_s=f"{r['rate']:.2f}", seconds=f"{r['seconds']:.0f}",
                 vs_in_memory=f"{r['rate'] / rates['in-memory']['rate']:.2f}x" if "in-memory" in rates else "",
                 peak_rss_mb=f"{r['peak_rss_mb']:.0f}", rss_after_warm_up_mb=f"{r['rss_before_mb']:.0f}")
            for p, r in rates.items()]
    print(common.table(rows, ["path", "files", "img_s", "seconds", "vs_in_memory", "peak_rss_mb",
                              "rss_after_warm_up_mb"]))
    common.finish(args, facts, load_before, records)


def write_files(count, folder, chunk=256):
    """``count`` photo-like JPEGs in ``folder`` (written ``chunk`` at a time: bounded memory)."""
    paths = []
    for start in range(0, count, chunk):
        paths += infer_workers.write_jpegs(min(chunk, count - start), folder, first=start)
    return paths


if __name__ == "__main__":
    main()
