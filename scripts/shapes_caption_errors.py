#!/usr/bin/env python3
"""What the shapes model's captions get wrong: the breakdown behind Models/shapes-tiny/README.md.

    paligemma shapes --output fresh --count 1000 --seed 3
    paligemma eval --precision exact --data fresh/data.jsonl --group-by shapes --output preds.jsonl
    python3 scripts/shapes_caption_errors.py preds.jsonl fresh/data.jsonl

Reads eval's per-line output (answer and reference of every `caption en` line) and prints the share
of captions with the right number of objects, the right objects in any order, the colours and the
shapes in the right order, exact by number of objects, and exact by the smallest horizontal gap
between neighbouring objects' box centres (from the scenes' `detect` answers in data.jsonl, when
it holds them; the caption lists objects left to right by box centre). Standard library only.
"""
import collections
import json
import re
import sys
from pathlib import Path

SIZE = 224  # gaps are given in pixels of a 224-pixel canvas (`paligemma shapes`' default size)


def objects(caption):
    """"a red circle, a blue square and a green triangle" -> [("red", "circle"), ...]."""
    parts = [p.strip() for p in caption.replace(" and ", ", ").split(",") if p.strip()]
    return [tuple(p.split()[1:3]) for p in parts]


def centres(data_path):
    """Each image's box centres in x (fraction of the width) from its single-shape detect lines."""
    xs = collections.defaultdict(list)
    for line in open(data_path):
        r = json.loads(line)
        if r["prefix"].startswith("detect ") and ";" not in r["prefix"] and r["suffix"]:
            for box in r["suffix"].split(" ; "):
                v = [int(c) for c in re.findall(r"<loc(\d+)>", box)]
                xs[Path(r["image"]).name].append((v[1] + v[3]) / 2 / 1023)
    return xs


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    preds = [r for r in map(json.loads, open(sys.argv[1])) if r["prefix"] == "caption en"]
    if not preds:
        sys.exit(f"{sys.argv[1]}: no `caption en` lines")
    xs = centres(sys.argv[2]) if len(sys.argv) == 3 else {}
    n = len(preds)
    share = lambda k: f"{100 * k / n:.1f}%"
    ref = [objects(r["reference"]) for r in preds]
    ans = [objects(r["answer"]) for r in preds]
    print(f"{n} captions, exact {share(sum(r['answer'] == r['reference'] for r in preds))}")
    print(f"  right number of objects       {share(sum(len(a) == len(b) for a, b in zip(ref, ans)))}")
    print(f"  right objects, any order      {share(sum(sorted(a) == sorted(b) for a, b in zip(ref, ans)))}")
    print(f"  colours in the right order    {share(sum([o[0] for o in a] == [o[0] for o in b] for a, b in zip(ref, ans)))}")
    print(f"  shapes in the right order     {share(sum([o[1:] for o in a] == [o[1:] for o in b] for a, b in zip(ref, ans)))}")
    by = collections.defaultdict(lambda: [0, 0])
    for r, objs in zip(preds, ref):
        by[len(objs)][0] += 1
        by[len(objs)][1] += r["answer"] == r["reference"]
    for k in sorted(by):
        print(f"  exact, {k} object{'s' if k > 1 else ' '}             {100 * by[k][1] / by[k][0]:5.1f}% of {by[k][0]}")
    if not xs:
        return
    edges = [0, 2, 4, 8, 16, 32, 10_000]
    gaps = collections.defaultdict(lambda: [0, 0])
    for r in preds:
        c = sorted(xs.get(Path(r["image"]).name, []))
        if len(c) < 2:
            continue
        gap = min(b - a for a, b in zip(c, c[1:])) * SIZE
        lo, hi = next((lo, hi) for lo, hi in zip(edges, edges[1:]) if lo <= gap < hi)
        gaps[lo, hi][0] += 1
        gaps[lo, hi][1] += r["answer"] == r["reference"]
    print("captions of 2-4 objects by the smallest gap between neighbouring box centres (px at 224):")
    for lo, hi in zip(edges, edges[1:]):
        total, right = gaps[lo, hi]
        if total:
            span = f"{lo}-{hi}" if hi < 10_000 else f"{lo}+"
            print(f"  {span:>6} px: {total:4d} captions, exact {100 * right / total:5.1f}%, wrong {total - right}")


if __name__ == "__main__":
    main()
