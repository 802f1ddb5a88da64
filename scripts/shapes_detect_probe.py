#!/usr/bin/env python3
"""Why the bundled shapes model gives few boxes: the first answer step of `detect <shape>`, read
with transformers from Models/shapes-tiny. For each prompt it takes the next-token
distribution after the prompt and reports, separately for shapes present and absent:
P(<eos>), the mass on all 1,024 <loc> tokens together, the largest single <loc> token, how far
the most likely <loc> is from the true first coordinate (y1), and the mass within ±20 bins of it.

Run from the repository root (transformers 5.24 + pillow, as make_shapes_parity_fixtures.py):

    swift run -c release paligemma shapes --output /tmp/shp --count 40 --seed 7 --tasks detect
    /tmp/ref/bin/python scripts/shapes_detect_probe.py /tmp/shp
"""
import json
import re
import sys

import torch
from PIL import Image
from transformers import PaliGemmaForConditionalGeneration, PaliGemmaProcessor
from transformers.utils import logging

logging.set_verbosity_error()
torch.set_num_threads(1)
data = sys.argv[1] if len(sys.argv) > 1 else "/tmp/shp"
folder = "Models/shapes-tiny"
model = PaliGemmaForConditionalGeneration.from_pretrained(folder).eval()
processor = PaliGemmaProcessor.from_pretrained(folder)
loc0 = processor.tokenizer.convert_tokens_to_ids("<loc0000>")
eos = processor.tokenizer.eos_token_id

stats = {"present": [], "absent": []}
for line in open(f"{data}/data.jsonl"):
    row = json.loads(line)
    if not row["prefix"].startswith("detect") or ";" in row["prefix"]:
        continue
    image = Image.open(f"{data}/{row['image']}").convert("RGB")
    inputs = processor(text="<image>" + row["prefix"], images=image, return_tensors="pt")
    with torch.no_grad():
        p = model(**inputs).logits[0, -1].softmax(-1)
    loc = p[loc0:loc0 + 1024]
    entry = {"eos": p[eos].item(), "loc": loc.sum().item(), "top": loc.max().item()}
    if row["suffix"]:
        y1 = int(re.findall(r"<loc(\d+)>", row["suffix"])[0])
        entry["err"] = abs(int(loc.argmax()) - y1)
        entry["near"] = loc[max(0, y1 - 20):y1 + 21].sum().item()
    stats["present" if row["suffix"] else "absent"].append(entry)

for kind, rows in stats.items():
    n = len(rows)
    if n == 0:
        continue
    mean = lambda key: sum(r[key] for r in rows) / n
    text = (f"{kind}: {n} prompts; P(<eos>) {mean('eos'):.3f}, all <loc> together {mean('loc'):.3f}, "
            f"largest single <loc> {mean('top'):.4f}; <eos> above every <loc> in {sum(r['eos'] > r['top'] for r in rows)}/{n}")
    if kind == "present":
        text += (f"; |most likely <loc> - true y1| median {sorted(r['err'] for r in rows)[n // 2]} bins, "
                 f"mass within ±20 bins of y1 {mean('near'):.3f} (uniform over the <loc> mass: {mean('loc') * 41 / 1024:.3f})")
    print(text)
