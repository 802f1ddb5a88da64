#!/usr/bin/env python3
"""Builds the training-data reference: what transformers' PaliGemmaProcessor(text=prefix,
suffix=suffix) returns for a list of (prefix, suffix) pairs, for the Swift tests of
Sources/PaliGemma/Training/TrainingData.swift (Tests/PaliGemmaTests/TrainingDataTests.swift).

Run by hand, not by CI (the fixture is committed):
    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install "transformers==5.24.0" "tokenizers==0.23.3" "sentencepiece==0.2.3" \
        "protobuf==7.36.2" "numpy==2.4.6" "pillow==13.0.0" "safetensors==0.8.0"
    /tmp/ref/bin/python scripts/make_finetune_data_fixtures.py

Pinned (checked at start-up; the script refuses other versions): transformers 5.24.0, tokenizers
0.23.3, sentencepiece 0.2.3, protobuf 7.36.2, numpy 2.4.6, pillow 13.0.0, safetensors 0.8.0. Torch
is not needed. Nothing is random: a rerun writes the same file.

Input: the tiny checkpoint folder Tests/PaliGemmaTests/Fixtures/models/e2e-pg1 (tokenizer.json,
tokenizer.model, tokenizer_config.json, preprocessor_config.json with image_seq_length 16), read
with AutoTokenizer and SiglipImageProcessorPil (what SiglipImageProcessor uses without torchvision,
as in make_e2e_fixtures.py), and PaliGemmaProcessor built from the two.

What the processor does (transformers 5.24.0, models/paligemma/processing_paligemma.py), checked
here on every pair:
  * text "<image>" + prefix becomes "<image>" x N + "<bos>" + prefix + "\n" (the `<bos>` is the
    tokenizer's bos_token text, the "\n" is appended); text without "<image>" gets the same layout
    (with a warning), also checked;
  * the suffix gets the eos_token text appended ("<eos>") and goes in as `text_pair`: the second
    sequence is tokenized on its own (no `<bos>`, no dummy "▁" prefix: Gemma's tokenizer has none)
    and the pair template gives token_type_ids 0 to the first sequence and 1 to the second;
  * labels = input_ids with -100 where token_type_ids == 0 (unshifted);
  * "<image>" inside the prefix or the suffix is refused (the count of image tokens no longer
    matches the images).
The tokenizer's text rules are those of Hugging Face tokenizers on tokenizer.json: every added
token is matched whole in the raw text, special ones included ("<eos>" typed in a suffix is the
eos id), then spaces become "▁" and BPE merges by rank.

This runtime tokenizes text with SentencePiece's rules (tokenizer.model: what the model was trained
with, and what inference uses), plus transformers' matching of control pieces typed as text. For
each pair the script also builds those ids with the sentencepiece library
(`<image>` x N, `<bos>`, sp(prefix + "\n"), sp(suffix), `<eos>`, where sp() splits the text on
the spellings of <pad>/<eos>/<bos>/<unk> first) and sorts the pair:
  pairs        sentencepiece's ids equal transformers': the Swift ids must equal them exactly;
  divergent    the two tokenizers disagree on the text itself (literal "▁" beside spaces, runs of
               spaces longer than the longest "▁" run piece: 5 in this tokenizer): each must be
               listed in DIVERGENT below with its reason, or the script fails; the Swift ids must
               equal sentencepiece's.

Output: Tests/PaliGemmaTests/Fixtures/finetune-data/processor.json
  {"model": "e2e-pg1", "image_seq_length": 16, "versions": {...},
   "image": "e2e/images/scene.jpg", "image_pixels_equal": "e2e/pg1-caption.safetensors",
   "pairs": [{"prefix", "suffix", "input_ids", "token_type_ids", "labels"}, ...],
   "divergent": [{"prefix", "suffix", "reason", "input_ids", "token_type_ids", "labels",
                  "sentencepiece_input_ids"}, ...]}
The script also checks that the processor's pixel_values for scene.jpg equal those of
Fixtures/e2e/pg1-caption.safetensors (made by make_e2e_fixtures.py with the same processor), so
the Swift test compares `TrainingData.example` pixels with that file.
"""
import json
import os
import sys

PINNED = {"transformers": "5.24.0", "tokenizers": "0.23.3", "sentencepiece": "0.2.3", "protobuf": "7.36.2",
          "numpy": "2.4.6", "pillow": "13.0.0", "safetensors": "0.8.0"}

import google.protobuf
import numpy as np
import PIL
import safetensors
import sentencepiece as spm
import tokenizers
import transformers

_versions = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
             "sentencepiece": spm.__version__, "protobuf": google.protobuf.__version__,
             "numpy": np.__version__, "pillow": PIL.__version__, "safetensors": safetensors.__version__}
for _name, _want in PINNED.items():
    if _versions[_name] != _want:
        sys.exit(f"{_name} {_versions[_name]} found, {_want} pinned; install the pinned versions")

from PIL import Image  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402
from sentencepiece import sentencepiece_model_pb2 as model_pb2  # noqa: E402
from transformers import AutoTokenizer, PaliGemmaProcessor, SiglipImageProcessorPil  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "Tests", "PaliGemmaTests", "Fixtures")
MODEL = os.path.join(FIX, "models", "e2e-pg1")
OUT = os.path.join(FIX, "finetune-data", "processor.json")

LOREM = ("The quick brown fox jumps over the lazy dog near the river bank, while 3 children (aged 7, 9 and 12) "
         "watch from a wooden bridge; a red kite drifts above them. ")

PAIRS = [
    # plain ASCII, the mix checkpoints' prompts
    ("caption en", "a red circle"),
    ("answer en what is in the image?", "a cat"),
    ("question en a cat", "what animal is on the sofa?"),
    ("describe en", "A yellow ball sits left of a green box, on a blue gradient."),
    ("ocr", "PALIGEMMA 42"),
    # unicode
    ("caption de", "eine rote Kugel über dem Tisch"),
    ("caption fr", "café crème, déjà vu — à côté"),
    ("caption ja", "東京タワーと富士山"),
    ("caption en", "party 🎉🎈 time"),
    ("answer ru что это?", "кошка"),
    # digits
    ("answer en how many?", "1234567890"),
    ("ocr", "3.14159 + 2,718 = 5.86 (approx.)"),
    # empty and nearly empty
    ("", ""),
    ("caption en", ""),
    ("", "x"),
    (" ", " "),
    ("caption en", "\n"),
    # leading and trailing spaces
    (" caption en", " a cat "),
    ("caption en  ", "  two leading spaces"),
    ("caption en", "trailing space "),
    ("caption en", "a     b"),  # five spaces: the longest "▁" run piece
    # newlines and tabs inside
    ("describe en", "line one\nline two\n\nline four"),
    ("caption\nen", "a\tb\t\tc"),
    ("answer en first line\nsecond line", "yes\n"),
    # detection and segmentation answers
    ("detect cat", "<loc0123><loc0456><loc0789><loc1023> cat"),
    ("detect cat ; dog", "<loc0001><loc0002><loc0003><loc0004> cat ; <loc0005><loc0006><loc0007><loc0008> dog"),
    ("detect cat", "<loc0000><loc0000><loc1023><loc1023>cat"),
    ("segment cat", "<loc0010><loc0020><loc0900><loc0950> "
     + "".join(f"<seg{i:03d}>" for i in (12, 0, 127, 64, 5, 99, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)) + " cat"),
    ("detect " + " ; ".join(f"thing{i}" for i in range(12)),
     " ; ".join(f"<loc{4 * i:04d}><loc{4 * i + 1:04d}><loc{900 + i:04d}><loc{1000 + i:04d}> thing{i}"
                for i in range(12))),
    # other added tokens typed as text (user-defined pieces in SentencePiece: matched whole by both)
    ("caption en", "<b>bold</b> and <start_of_turn>turn<end_of_turn> <mask>"),
    # control pieces typed as text: transformers reads them as the control ids
    ("caption en", "a <eos> b"),
    ("<bos>caption", "x<pad>y<unk>z"),
    ("caption en", "ends with eos<eos>"),
    # long text
    ("describe en", LOREM * 6),
    ("answer en " + LOREM.strip(), LOREM * 2),
]

# Pairs on which transformers' tokenizer (tokenizer.json) and SentencePiece (tokenizer.model)
# disagree about the text itself; the runtime follows SentencePiece.
DIVERGENT = [
    ("caption en", "a      b",
     "six spaces: SentencePiece takes the longest '▁' run piece first (5 + 1), "
     "transformers' BPE merges by rank (4 + 2)"),
    ("caption en", "x  ▁▁",
     "a literal '▁' beside spaces: transformers matches the '▁▁' added token in the raw text, "
     "before spaces become '▁'"),
]


def sentencepiece_pieces(path):
    m = model_pb2.ModelProto()
    with open(path, "rb") as f:
        m.ParseFromString(f.read())
    control = [p.piece for p in m.pieces if p.type in (model_pb2.ModelProto.SentencePiece.CONTROL,
                                                      model_pb2.ModelProto.SentencePiece.UNKNOWN)]
    return sorted(control, key=len, reverse=True)


def dumps(value, indent=""):
    """JSON with one member per line and each list of numbers on one line."""
    inner = indent + " "
    if isinstance(value, dict):
        members = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(members) + "\n" + indent + "}"
    if isinstance(value, list) and not all(isinstance(v, int) for v in value):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in value) + "\n" + indent + "]"
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def main():
    hf_logging.set_verbosity_error()  # the "<image> tokens missing" warning of the second form
    tok = AutoTokenizer.from_pretrained(MODEL)
    ip = SiglipImageProcessorPil.from_pretrained(MODEL)
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    n = processor.image_seq_length
    sp = spm.SentencePieceProcessor(model_file=os.path.join(MODEL, "tokenizer.model"))
    controls = sentencepiece_pieces(os.path.join(MODEL, "tokenizer.model"))
    image_id, bos, eos = tok.convert_tokens_to_ids("<image>"), tok.bos_token_id, tok.eos_token_id
    assert (bos, eos, tok.eos_token, tok.bos_token) == (2, 1, "<eos>", "<bos>")

    def sp_encode(text):
        """SentencePiece's ids, with control pieces typed as text read as their ids."""
        out, i, start = [], 0, 0
        while i < len(text):
            hit = next((c for c in controls if text.startswith(c, i)), None)
            if hit is None:
                i += 1
                continue
            out += sp.encode(text[start:i]) + [sp.piece_to_id(hit)]
            i += len(hit)
            start = i
        return out + sp.encode(text[start:])

    image_path = os.path.join(FIX, "e2e", "images", "scene.jpg")
    image = Image.open(image_path)

    def run(prefix, suffix):
        r = processor(images=image, text="<image>" + prefix, suffix=suffix, return_tensors="np")
        r2 = processor(images=image, text=prefix, suffix=suffix, return_tensors="np")
        for key in ("input_ids", "token_type_ids", "labels", "pixel_values"):
            assert np.array_equal(r[key], r2[key]), (prefix, suffix, key)
        ids, types, labels = (r[k][0].tolist() for k in ("input_ids", "token_type_ids", "labels"))
        # the layout described in the docstring
        assert ids[:n + 1] == [image_id] * n + [bos] and ids[-1] == eos
        assert types == sorted(types) and labels == [-100 if t == 0 else i for i, t in zip(ids, types)]
        ours = [image_id] * n + [bos] + sp_encode(prefix + "\n") + sp_encode(suffix) + [eos]
        prefix_length = n + 1 + len(sp_encode(prefix + "\n"))
        return dict(prefix=prefix, suffix=suffix, input_ids=ids, token_type_ids=types, labels=labels), \
            ours, prefix_length, r["pixel_values"]

    pairs, divergent = [], []
    for prefix, suffix in PAIRS:
        row, ours, prefix_length, _ = run(prefix, suffix)
        if ours != row["input_ids"]:
            sys.exit(f"sentencepiece differs from transformers on {prefix!r}, {suffix!r}: "
                     f"{ours} vs {row['input_ids']}; move it to DIVERGENT with a reason")
        assert row["token_type_ids"].count(0) == prefix_length
        pairs.append(row)
    for prefix, suffix, reason in DIVERGENT:
        row, ours, prefix_length, _ = run(prefix, suffix)
        if ours == row["input_ids"]:
            sys.exit(f"{prefix!r}, {suffix!r} is listed as divergent, but both tokenizers agree")
        assert row["token_type_ids"].count(0) == prefix_length
        row["reason"] = reason
        row["sentencepiece_input_ids"] = ours
        divergent.append(row)

    for prefix, suffix in (("caption <image>", "x"), ("caption en", "a <image> b")):
        try:
            run(prefix, suffix)
        except ValueError:
            continue
        sys.exit(f"the processor accepted '<image>' in {prefix!r}, {suffix!r}")

    # The pixels are the inference ones: the same as the e2e fixture made by the same processor.
    _, _, _, pixels = run("caption en", "x")
    e2e = load_file(os.path.join(FIX, "e2e", "pg1-caption.safetensors"))["pixel_values"]
    assert np.array_equal(pixels.astype(np.float32), e2e), "scene.jpg pixels differ from e2e/pg1-caption"

    example = pairs[0]
    print("example:", repr(example["prefix"]), repr(example["suffix"]))
    print("  input_ids     ", example["input_ids"])
    print("  pieces        ", tok.convert_ids_to_tokens(example["input_ids"]))
    print("  token_type_ids", example["token_type_ids"])
    print("  labels        ", example["labels"])

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(dumps({"model": "e2e-pg1", "image_seq_length": n, "versions": _versions,
                       "image": "e2e/images/scene.jpg", "image_pixels_equal": "e2e/pg1-caption.safetensors",
                       "pairs": pairs, "divergent": divergent}) + "\n")
    print(f"{len(pairs)} pairs, {len(divergent)} divergent -> {os.path.relpath(OUT, ROOT)}")


if __name__ == "__main__":
    main()
