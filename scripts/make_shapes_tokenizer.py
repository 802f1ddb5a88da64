#!/usr/bin/env python3
"""The tokenizer of the bundled shapes model (Models/shapes-tiny): a small SentencePiece BPE
model with Gemma's settings, trained on every sentence of the shapes world, with PaliGemma's
special pieces appended (<loc0000>..<loc1023>, <seg000>..<seg127>, <image>) as in Gemma's
tokenizer. Byte fallback keeps any other text encodable (one piece per UTF-8 byte).

Run by hand from the repository root (pinned versions, checked at start-up):

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install -r scripts/requirements-finetune-fixtures.txt \
        sentencepiece==0.2.3 tokenizers==0.23.3 protobuf==7.36.2
    /tmp/ref/bin/python scripts/make_shapes_tokenizer.py Models/shapes-tiny

Writes into the folder: tokenizer.model, and tokenizer.json + tokenizer_config.json as
transformers' GemmaTokenizer converts and saves them; prints the piece count and the ids of
<image>, <loc0000> and <seg000> (config.json's image_token_index is the <image> id). The
training text is deterministic (the world's sentences enumerated), so a rerun writes the same
files.
"""
import io
import itertools
import os
import sys
import tempfile

PINNED = {"sentencepiece": "0.2.3", "transformers": "5.24.0", "protobuf": "7.36.2"}

import google.protobuf
import sentencepiece as spm
import transformers
from sentencepiece import sentencepiece_model_pb2 as model_pb2

for name, want in {"sentencepiece": spm.__version__, "transformers": transformers.__version__,
                   "protobuf": google.protobuf.__version__}.items():
    if PINNED[name] != want:
        sys.exit(f"{name} {want} found, {PINNED[name]} pinned; install the pinned versions")

SHAPES = ["circle", "square", "triangle"]
COLORS = ["red", "green", "blue", "yellow"]
EXTRA = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)] + ["<image>"]
VOCAB = 448  # BPE pieces before the extra ones: 4 special + 256 bytes + merges (every word of the world whole)


def sentences():
    """Every prompt and answer form of the world (Sources/PaliGemma/Tasks/Shapes.swift), plus
    PaliGemma's other task prefixes so that they stay short too."""
    out = ["caption en", "answer en how many shapes are there?"]
    phrases = [f"a {c} {s}" for c in COLORS for s in SHAPES]
    for n in range(1, 5):
        for combo in itertools.islice(itertools.product(phrases, repeat=n), 0, 400):
            out.append(combo[0] if n == 1 else ", ".join(combo[:-1]) + " and " + combo[-1])
    for s in SHAPES:
        out += [f"answer en how many {s}s are there?", f"answer en what color is the {s}?", f"detect {s}"]
        out += [f"detect {s} ; {t}" for t in SHAPES if t != s]
        out += [f"{s} ; {s}", f"{s}"]
    out += COLORS + [str(i) for i in range(10)]
    out += ["caption es", "describe en", "ocr", "question en", "segment", "what", "where", "which", "is there"]
    return out * 3


def train():
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences()), model_writer=buf, model_type="bpe", vocab_size=VOCAB,
        byte_fallback=True, character_coverage=1.0, normalization_rule_name="identity",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3, pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>",
        unk_piece="<unk>", num_threads=1, shuffle_input_sentence=False, minloglevel=2,
        add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True,
        allow_whitespace_only_pieces=True, split_by_whitespace=True, split_by_unicode_script=True,
        split_by_number=True, hard_vocab_limit=False)
    m = model_pb2.ModelProto()
    m.ParseFromString(buf.getvalue())
    for p in EXTRA:
        piece = m.pieces.add()
        piece.piece, piece.score, piece.type = p, 0.0, model_pb2.ModelProto.SentencePiece.USER_DEFINED
    return m


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("Models", "shapes-tiny")
    os.makedirs(out, exist_ok=True)
    m = train()
    path = os.path.join(out, "tokenizer.model")
    with open(path, "wb") as f:
        f.write(m.SerializeToString())
    with tempfile.TemporaryDirectory() as src:
        with open(os.path.join(src, "tokenizer.model"), "wb") as f:
            f.write(m.SerializeToString())
        tok = transformers.GemmaTokenizer.from_pretrained(src)
        tok.save_pretrained(out)
    sp = spm.SentencePieceProcessor(model_file=path)
    for s in sentences()[:3] + ["answer en what color is the triangle?", "detect circle ; square"]:
        hf = tok.encode(s, add_special_tokens=False)
        assert hf == sp.encode(s), (s, hf, sp.encode(s))
        print(f"{s!r}: {sp.encode(s, out_type=str)}")
    print(f"{sp.get_piece_size()} pieces; <image> {sp.piece_to_id('<image>')}, <loc0000> {sp.piece_to_id('<loc0000>')}, "
          f"<seg000> {sp.piece_to_id('<seg000>')}")


if __name__ == "__main__":
    main()
