#!/usr/bin/env python3
"""Writes Tests/PaliGemmaTokenizerTests/Fixtures/runs.json: sentencepiece's ids (0.2.x) for
runs of one repeated character, where the doubled piece is in the vocabulary and the tripled
one is not ("sss" -> "ss" + "s", not "s" + "ss"), for each fixture tokenizer. BPE must break
ties between equal-scoring overlapping pairs leftmost-first; a right-to-left tie-break passed
every other test (mutation run, issue 17).

    /tmp/ref/bin/python scripts/make_tokenizer_tie_fixtures.py   (sentencepiece==0.2.x)
"""
import json
from pathlib import Path

import sentencepiece as spm

FIX = Path(__file__).resolve().parent.parent / "Tests" / "PaliGemmaTokenizerTests" / "Fixtures"
MODELS = ["gemma_bpe_2k", "gemma_bpe_6k", "dummy_prefix_bpe_1k"]


def main():
    out = {"sentencepiece": spm.__version__, "models": {}}
    for name in MODELS:
        sp = spm.SentencePieceProcessor(model_file=str(FIX / name / "tokenizer.model"))
        vocab = {sp.id_to_piece(i) for i in range(sp.get_piece_size())}
        chars = [c for c in "abcdefghijklmnopqrstuvwxyz.*_-=!?0" if c * 2 in vocab and c * 3 not in vocab]
        texts = []
        for c in chars:
            texts += [c * n for n in (3, 4, 5, 7)] + [f"a{c * 3}b", f"{c * 3} {c * 5}"]
        out["models"][name] = {
            "doubled_not_tripled": chars,
            "cases": [{"text": t, "ids": sp.encode(t), "pieces": sp.encode(t, out_type=str)} for t in texts],
        }
    (FIX / "runs.json").write_text(json.dumps(out, ensure_ascii=False, indent=1) + "\n")


if __name__ == "__main__":
    main()
