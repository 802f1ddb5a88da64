#!/usr/bin/env python3
"""Benchmark: decode + resize + normalise a 4000x3000 JPEG to 224 and 896, Swift
(release build of paligemma-image-bench) against Pillow + transformers
(SiglipImageProcessorPil, what PaliGemmaProcessor uses without torchvision), in one run.

    /tmp/ref/bin/python scripts/bench_image.py [--repeat 7] [--image path.jpg]

Prints both sides' JSON and a table of ratios (reference time / Swift time).
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from make_image_fixtures import photo  # noqa: E402


def make_jpeg(path):
    # Photo-like content at 4000x3000 (tiled from a smaller render to keep this quick).
    tile = photo(1000, 750, 42)
    big = np.tile(tile, (4, 4, 1))
    Image.fromarray(big).save(path, "JPEG", quality=90)


def reference(path, sizes, repeats):
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil
    results = []
    for size in sizes:
        processor = SiglipImageProcessorPil(size={"height": size, "width": size})
        totals, decodes = [], []
        for i in range(repeats + 1):
            t0 = time.perf_counter()
            im = Image.open(path)
            im.load()
            t1 = time.perf_counter()
            pv = processor(im, return_tensors="np")["pixel_values"]
            t2 = time.perf_counter()
            if i:
                decodes.append((t1 - t0) * 1e3)
                totals.append((t2 - t0) * 1e3)
        assert pv.shape == (1, 3, size, size)
        results.append({"size": size, "decode_ms": {"min": min(decodes), "median": statistics.median(decodes)},
                        "total_ms": {"min": min(totals), "median": statistics.median(totals)}})
    return {"implementation": "pillow+transformers", "results": results}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--image")
    parser.add_argument("--sizes", default="224,896")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        path = args.image or str(Path(tmp) / "bench_4000x3000.jpg")
        if not args.image:
            make_jpeg(path)
        subprocess.run(["swift", "build", "-c", "release", "--product", "paligemma-image-bench"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        exe = subprocess.run(["swift", "build", "-c", "release", "--show-bin-path"], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip() + "/paligemma-image-bench"
        swift = json.loads(subprocess.run([exe, path, "--sizes", args.sizes, "--repeat", str(args.repeat)],
                                          check=True, capture_output=True, text=True).stdout)
        ref = reference(path, sizes, args.repeat)
    print(json.dumps(swift, sort_keys=True))
    print(json.dumps(ref, sort_keys=True))
    print(f"\n{'size':>5} {'step':>8} {'reference ms':>13} {'swift ms':>9} {'speed-up':>9}   (medians)")
    for s, r in zip(swift["results"], ref["results"]):
        for step in ("decode_ms", "total_ms"):
            a, b = r[step]["median"], s[step]["median"]
            print(f"{s['size']:>5} {step[:-3]:>8} {a:>13.1f} {b:>9.1f} {a / b:>8.2f}x")
        print(f"{s['size']:>5} {'resize':>8} {'':>13} {s['resize_ms']['median']:>9.1f}")
        print(f"{s['size']:>5} {'norm':>8} {'':>13} {s['normalize_ms']['median']:>9.1f}")


if __name__ == "__main__":
    main()
