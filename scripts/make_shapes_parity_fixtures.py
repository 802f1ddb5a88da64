#!/usr/bin/env python3
"""transformers' greedy answers from the bundled shapes model (Models/shapes-tiny), for
Tests/PaliGemmaTests/ShapesModelTests.swift: the same folder loaded by
PaliGemmaForConditionalGeneration + PaliGemmaProcessor must give the same ids and text as this
runtime.

Run by hand from the repository root, after the images are written by the Swift generator
(same environment as make_shapes_tokenizer.py):

    swift run -c release paligemma shapes --output Tests/PaliGemmaTests/Fixtures/shapes-parity --count 6 --seed 9
    /tmp/ref/bin/python scripts/make_shapes_parity_fixtures.py

Reads Fixtures/shapes-parity/data.jsonl (image, prefix, suffix) and writes
Fixtures/shapes-parity/expected.json: per line the prompt ids, the generated ids (up to and
including <eos>) and transformers' decoded text; and expected.safetensors: the first
generated step's logits of every line, [lines, vocabulary].
"""
import json
import os
import sys

import torch
import transformers
from PIL import Image
from safetensors.torch import save_file
from transformers import GemmaTokenizer, PaliGemmaForConditionalGeneration, PaliGemmaProcessor, SiglipImageProcessor

if transformers.__version__ != "5.24.0" or not torch.__version__.startswith("2.13.0"):
    sys.exit(f"transformers 5.24.0 and torch 2.13.0 pinned; found {transformers.__version__}, {torch.__version__}")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(ROOT, "Models", "shapes-tiny")
FOLDER = os.path.join(ROOT, "Tests", "PaliGemmaTests", "Fixtures", "shapes-parity")
MAX_NEW = 40


def main():
    torch.manual_seed(0)
    model = PaliGemmaForConditionalGeneration.from_pretrained(MODEL, attn_implementation="eager").eval()
    tok = GemmaTokenizer.from_pretrained(MODEL)
    ip = SiglipImageProcessor.from_pretrained(MODEL)
    processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
    lines = [json.loads(l) for l in open(os.path.join(FOLDER, "data.jsonl"))]
    out, logits = [], []
    for line in lines:
        image = Image.open(os.path.join(FOLDER, line["image"])).convert("RGB")
        inputs = processor(images=image, text="<image>" + line["prefix"], return_tensors="pt")
        with torch.no_grad():
            gen = model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, eos_token_id=1, pad_token_id=0)
        n = inputs["input_ids"].shape[1]
        ids = gen.sequences[0, n:].tolist()
        text = processor.decode(ids, skip_special_tokens=True)
        logits.append(gen.logits[0][0].float())
        out.append({"image": line["image"], "prefix": line["prefix"], "reference": line["suffix"],
                    "input_ids": inputs["input_ids"][0].tolist(), "generated_ids": ids, "text": text})
        print(f"{line['image']} {line['prefix']!r}: {text!r} (reference {line['suffix']!r})")
    with open(os.path.join(FOLDER, "expected.json"), "w") as f:
        json.dump(out, f, indent=1)
    save_file({"first_step_logits": torch.stack(logits).contiguous()}, os.path.join(FOLDER, "expected.safetensors"))
    right = sum(o["text"] == o["reference"] for o in out)
    print(f"{len(out)} answers, {right} equal to the reference")


if __name__ == "__main__":
    main()
