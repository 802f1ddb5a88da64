#!/usr/bin/env python3
"""Tokenizer benchmark at PaliGemma's real vocabulary size (257,153 pieces).

Run by hand from the repository root (pinned versions as in make_tokenizer_fixtures.py):

    python scripts/benchmark_tokenizer.py [--out /tmp/pg-tok-bench]

1. Builds a 257,153-piece model in --out (not committed): sentencepiece trains a byte-fallback BPE model
   with Gemma's settings, which is then extended to 256,000 pieces with further NORMAL pieces (the most
   frequent adjacent piece pairs of the text, then random pairs, with scores below every trained piece,
   so merges reach them as in a real BPE vocabulary), followed by <loc0000>..<loc1023>, <seg000>..<seg127>,
   <image>. transformers converts it to tokenizer.json.
2. Writes 1 MB of seeded mixed-language text.
3. Runs the release-built `paligemma-tokenizer-bench` and times sentencepiece and Hugging Face tokenizers
   on the same text in the same run; checks the Swift ids equal sentencepiece's.
4. Prints one JSON object.
"""
import argparse
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("fixtures", os.path.join(ROOT, "scripts", "make_tokenizer_fixtures.py"))
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)  # checks the pinned versions

import sentencepiece as spm
import tokenizers
from sentencepiece import sentencepiece_model_pb2 as model_pb2

SEED = 4242
TARGET_BASE = 256000


def bench_text(rng, size=1_000_000):
    lines = fixtures.training_text(rng, lines=40000)
    rng.shuffle(lines)
    out, total = [], 0
    for line in lines:
        out.append(line)
        total += len(line.encode()) + 1
        if total >= size:
            break
    return "\n".join(out)[: size]


def build_model(out_dir, text, rng):
    sentences = fixtures.training_text(random.Random(fixtures.SEED), lines=30000)
    proto_bytes = fixtures.train("bench", 8000, True, sentences)
    m = model_pb2.ModelProto()
    m.ParseFromString(proto_bytes)
    extra = m.pieces[-1153:]
    extra = [(p.piece, p.type) for p in extra]
    del m.pieces[-1153:]
    pieces = {p.piece for p in m.pieces}
    min_score = min(p.score for p in m.pieces if p.type == 1)
    normal = [p.piece for p in m.pieces if p.type == 1]
    normal_set = set(normal)
    score = min_score

    def add(piece):
        nonlocal score
        if piece in pieces or len(m.pieces) >= TARGET_BASE:
            return
        score -= 1.0
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, score, 1
        pieces.add(piece)
        normal.append(piece)

    path = os.path.join(out_dir, "tokenizer.model")
    corpus = text + "\n" + "\n".join(sentences)
    for _ in range(6):  # frequent adjacent pairs, a few rounds
        with open(path, "wb") as f:
            f.write(m.SerializeToString())
        sp = spm.SentencePieceProcessor(model_file=path)
        counts = Counter()
        for line in corpus.split("\n"):
            seq = sp.encode(line, out_type=str)
            for a, b in zip(seq, seq[1:]):
                # Only NORMAL pieces merge into new NORMAL pieces (no user-defined "▁▁", "<0x..>" bytes).
                if b.startswith("▁") or a not in normal_set or b not in normal_set or len(a + b) > 16:
                    continue
                counts[a + b] += 1
        for piece, _ in counts.most_common(40000):
            add(piece)
        normal_set = set(normal)
    while len(m.pieces) < TARGET_BASE:  # fill with random pairs
        a, b = rng.choice(normal), rng.choice(normal)
        if not b.startswith("▁") and len(a + b) <= 16:
            add(a + b)
    for piece, typ in extra:
        p = m.pieces.add()
        p.piece, p.score, p.type = piece, 0.0, typ
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    fixtures.to_tokenizer_json(path, out_dir + "/hf")
    shutil.copy(os.path.join(out_dir, "hf", "tokenizer.json"), os.path.join(out_dir, "tokenizer.json"))
    return len(m.pieces)


def best_of(n, fn):
    best, result = float("inf"), None
    for _ in range(n):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/pg-tok-bench")
    ap.add_argument("--rebuild", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    text_path = os.path.join(args.out, "text.txt")
    text = bench_text(random.Random(SEED))
    with open(text_path, "w", encoding="utf-8") as f:
        f.write(text)
    if args.rebuild or not os.path.exists(os.path.join(args.out, "tokenizer.json")):
        build_model(args.out, text, random.Random(SEED + 1))
    with open(text_path, encoding="utf-8") as f:
        text = f.read()
    megabytes = len(text.encode()) / 1e6

    bench = os.path.join(ROOT, ".build", "release", "paligemma-tokenizer-bench")
    if not os.path.exists(bench):
        sys.exit("build first: swift build -c release --product paligemma-tokenizer-bench")
    ids_path = os.path.join(args.out, "swift_ids.txt")
    swift = json.loads(subprocess.run([bench, args.out, text_path, ids_path], check=True,
                                      capture_output=True, text=True).stdout)
    with open(ids_path) as f:
        swift_ids = [int(x) for x in f.read().split()]

    model_path = os.path.join(args.out, "tokenizer.model")
    sp_load, sp = best_of(3, lambda: spm.SentencePieceProcessor(model_file=model_path))
    sp_encode, sp_ids = best_of(3, lambda: sp.encode(text))
    hf_load, hf = best_of(3, lambda: tokenizers.Tokenizer.from_file(os.path.join(args.out, "tokenizer.json")))
    hf_encode, hf_enc = best_of(3, lambda: hf.encode(text, add_special_tokens=False))
    hf_ids = hf_enc.ids

    def first_diff(a, b):
        return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None if len(a) == len(b) else min(len(a), len(b)))

    result = {
        "pieces": swift["pieces"],
        "text_mb": round(megabytes, 3),
        "swift": {k: swift[k] for k in ("load_model_s", "load_json_s", "encode_s", "encode_mb_per_s",
                                         "encode_json_s", "json_ids_equal_model_ids", "decode_s", "decode_round_trips")},
        "sentencepiece": {"load_s": round(sp_load, 6), "encode_s": round(sp_encode, 6),
                          "encode_mb_per_s": round(megabytes / sp_encode, 3)},
        "hf_tokenizers": {"load_s": round(hf_load, 6), "encode_s": round(hf_encode, 6),
                          "encode_mb_per_s": round(megabytes / hf_encode, 3)},
        "ratios": {
            "encode_speed_vs_sentencepiece": round(sp_encode / swift["encode_s"], 3),
            "encode_speed_vs_hf_tokenizers": round(hf_encode / swift["encode_s"], 3),
            "load_speed_vs_sentencepiece": round(sp_load / swift["load_model_s"], 3),
            "load_json_speed_vs_hf_tokenizers": round(hf_load / swift["load_json_s"], 3) if swift["load_json_s"] else None,
        },
        "parity": {
            "ids": len(swift_ids),
            "swift_equals_sentencepiece": swift_ids == sp_ids,
            "first_diff_vs_sentencepiece": first_diff(swift_ids, sp_ids),
            "swift_equals_hf_tokenizers": swift_ids == hf_ids,
            "first_diff_vs_hf_tokenizers": first_diff(swift_ids, hf_ids),
        },
    }
    print(json.dumps(result, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
