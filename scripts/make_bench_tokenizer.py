#!/usr/bin/env python3
"""A tokenizer of PaliGemma's real size for benchmarks on random-weight folders
(`paligemma random-checkpoint --preset ...` writes weights and config only): 256,000 Gemma-like
pieces (a small SentencePiece BPE trained on a few sentences, then filler pieces "▁w<i>" that
decode to text but are never produced by encoding), the 1,024 <loc> and 128 <seg> pieces, and
<image> at 257,152 (config.json's image_token_index). A random model's tokens then decode to
text one by one, as a real model's do, so a streaming server benchmark sees every token.

    /tmp/ref/bin/python scripts/make_bench_tokenizer.py /tmp/pg-random

Needs sentencepiece and protobuf (the reference venv of PALIGEMMA.md). Writes tokenizer.model.
"""
import io
import os
import sys

import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2 as model_pb2

BASE = 256000
TEXT = ["caption en", "describe en", "answer en what is in the image?", "detect cat ; dog", "segment car", "ocr",
        "a photo of a cat sitting on a red sofa next to a window", "the quick brown fox jumps over the lazy dog"] * 20


def main():
    out = sys.argv[1]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(TEXT), model_writer=buf, model_type="bpe", vocab_size=400, byte_fallback=True,
        character_coverage=1.0, normalization_rule_name="identity", pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>",
        bos_piece="<bos>", unk_piece="<unk>", num_threads=1, minloglevel=2, add_dummy_prefix=False,
        hard_vocab_limit=False)
    m = model_pb2.ModelProto()
    m.ParseFromString(buf.getvalue())
    lowest = min(p.score for p in m.pieces)
    i = 0
    while len(m.pieces) < BASE:
        piece = m.pieces.add()
        piece.piece, piece.score, piece.type = f"\u2581w{i}", lowest - 1 - i * 1e-3, model_pb2.ModelProto.SentencePiece.NORMAL
        i += 1
    for p in [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)] + ["<image>"]:
        piece = m.pieces.add()
        piece.piece, piece.score, piece.type = p, 0.0, model_pb2.ModelProto.SentencePiece.USER_DEFINED
    assert m.pieces[257152].piece == "<image>"
    with open(os.path.join(out, "tokenizer.model"), "wb") as f:
        f.write(m.SerializeToString())
    print(f"{len(m.pieces)} pieces; <image> 257152")


if __name__ == "__main__":
    main()
