#!/usr/bin/env python3
"""End-to-end reference runs: tiny random PaliGemma 1 and 2 checkpoints with a real tokenizer
(tokenizer.model + tokenizer.json) and preprocessor_config.json, real image files, and
transformers' PaliGemmaProcessor + generate() as the reference. Used by
Tests/PaliGemmaTests/EndToEndTests.swift (the `paligemma` command line against these).

Run by hand, not by CI (same pinned environment as make_model_fixtures.py):
    /tmp/ref/bin/python scripts/make_e2e_fixtures.py

Writes Tests/PaliGemmaTests/Fixtures/models/e2e-{pg1,pg2}/ and
Tests/PaliGemmaTests/Fixtures/e2e/{images/*, CASE.safetensors}. Each CASE file holds input_ids
[T], pixel_values [I,3,S,S] (I images), generated_ids [G] (the stop token included when generation ended on
it) and logits [G,V] (the raw logits each generated id was chosen from); its metadata holds the
model, image (several joined by commas, in order), prompt and transformers' decoded text
(skip_special_tokens=True). Several images go to the processor as one prompt's list
(images=[[a, b]], text="<image><image>" + prompt), its documented multi-image layout.
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file
from transformers import (PaliGemmaConfig, PaliGemmaForConditionalGeneration, PaliGemmaProcessor,
                          GemmaTokenizer, SiglipImageProcessor)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_model_fixtures import reinit, write_hub_folder  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "Tests", "PaliGemmaTests", "Fixtures")
TOKENIZER = os.path.join(HERE, "..", "Tests", "PaliGemmaTokenizerTests", "Fixtures", "gemma_bpe_2k")
VOCAB_ROWS = 3168      # the tokenizer's 3153 pieces, padded like the hub pads 257152 -> 257216
IMAGE_TOKEN = 3152     # <image> in that tokenizer
MAX_NEW = 10

MODELS = [
    dict(name="e2e-pg1", family="gemma", dtype=torch.float32, spelling="hub", shards=1, seed=21,
         vision=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                     image_size=56, patch_size=14),
         text=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=16)),
    dict(name="e2e-pg2", family="gemma2", dtype=torch.float32, spelling="hub", shards=2, seed=22,
         vision=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                     image_size=56, patch_size=14),
         text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24,
                   attn_logit_softcapping=3.0, final_logit_softcapping=4.0, sliding_window=12)),
]

CASES = [
    ("pg1-caption", "e2e-pg1", ["scene.jpg"], "caption en"),
    ("pg1-detect", "e2e-pg1", ["scene.png"], "detect cat ; dog"),
    ("pg2-answer", "e2e-pg2", ["scene.jpg"], "answer en what is in the image?"),
    ("pg2-ocr", "e2e-pg2", ["wide.png"], "ocr"),
    ("pg1-two-images", "e2e-pg1", ["scene.jpg", "wide.png"], "answer en which image has text?"),
    ("pg2-three-images", "e2e-pg2", ["wide.png", "scene.png", "scene.jpg"], "caption en"),
]


def make_images(folder):
    os.makedirs(folder, exist_ok=True)
    img = Image.new("RGB", (120, 90), (30, 60, 90))
    d = ImageDraw.Draw(img)
    for i in range(90):
        d.line([(0, i), (119, i)], fill=(30 + i, 60 + i // 2, 200 - i))
    d.ellipse([10, 10, 60, 50], fill=(230, 200, 40))
    d.rectangle([70, 40, 110, 85], fill=(20, 160, 60), outline=(255, 255, 255))
    img.save(os.path.join(folder, "scene.jpg"), quality=90)
    img.save(os.path.join(folder, "scene.png"))
    wide = Image.new("RGBA", (200, 40), (255, 255, 255, 0))
    d = ImageDraw.Draw(wide)
    d.rectangle([5, 5, 195, 35], outline=(0, 0, 0, 255))
    d.text((12, 12), "PALIGEMMA 42", fill=(10, 10, 10, 255))
    wide.save(os.path.join(folder, "wide.png"))


def build(fx):
    text = dict(model_type=fx["family"], vocab_size=VOCAB_ROWS, **fx["text"])
    vision = dict(model_type="siglip_vision_model", vision_use_head=False, **fx["vision"])
    cfg = PaliGemmaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN,
                          projection_dim=fx["text"]["hidden_size"], hidden_size=fx["text"]["hidden_size"],
                          vocab_size=VOCAB_ROWS)
    cfg._attn_implementation = "eager"
    torch.manual_seed(fx["seed"])
    gen = torch.Generator().manual_seed(fx["seed"])
    model = PaliGemmaForConditionalGeneration(cfg).eval()
    reinit(model, gen)
    return cfg, model.to(fx["dtype"])


def main():
    images = os.path.join(FIX, "e2e", "images")
    make_images(images)
    processors = {}
    models = {}
    for fx in MODELS:
        folder = os.path.join(FIX, "models", fx["name"])
        shutil.rmtree(folder, ignore_errors=True)
        cfg, model = build(fx)
        fx_hub = dict(fx)
        write_hub_folder(model, cfg, fx_hub, folder)
        # patch the hub-style config: this tokenizer's vocabulary and image token
        with open(os.path.join(folder, "config.json")) as f:
            c = json.load(f)
        c["vocab_size"] = VOCAB_ROWS
        c["text_config"]["vocab_size"] = VOCAB_ROWS
        c["image_token_index"] = IMAGE_TOKEN
        with open(os.path.join(folder, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
        shutil.copy(os.path.join(TOKENIZER, "tokenizer.model"), folder)
        tok = GemmaTokenizer.from_pretrained(folder)
        tok.save_pretrained(folder)  # tokenizer.json, tokenizer_config.json as transformers writes them
        n = cfg.text_config.num_image_tokens
        size = fx["vision"]["image_size"]
        ip = SiglipImageProcessor(size={"height": size, "width": size}, resample=3, image_mean=[0.5] * 3,
                                  image_std=[0.5] * 3, do_convert_rgb=True)
        ip.image_seq_length = n
        processor = PaliGemmaProcessor(image_processor=ip, tokenizer=tok)
        ip.save_pretrained(folder)
        # strict reload through transformers proves the folder is what the reference ran
        reloaded = PaliGemmaForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
        processors[fx["name"]] = processor
        models[fx["name"]] = reloaded
        with open(os.path.join(folder, "preprocessor_config.json")) as f:
            pc = json.load(f)
        pc["image_seq_length"] = n
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(pc, f, indent=2)

    for case, model_name, image_names, prompt in CASES:
        processor, model = processors[model_name], models[model_name]
        pictures = [Image.open(os.path.join(images, name)) for name in image_names]
        inputs = processor(images=[pictures], text="<image>" * len(pictures) + prompt, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False, output_logits=True,
                                 return_dict_in_generate=True, eos_token_id=1, pad_token_id=0)
        prompt_len = inputs["input_ids"].shape[1]
        generated = out.sequences[0, prompt_len:]
        logits = torch.stack([l[0] for l in out.logits]).float()
        text = processor.decode(generated, skip_special_tokens=True)
        save_file({"input_ids": inputs["input_ids"][0].long().contiguous(),
                   "pixel_values": inputs["pixel_values"].float().contiguous(),
                   "generated_ids": generated.long().contiguous(), "logits": logits.contiguous()},
                  os.path.join(FIX, "e2e", case + ".safetensors"),
                  metadata={"model": model_name, "image": ",".join(image_names), "prompt": prompt, "text": text})
        print(f"{case}: {prompt_len} prompt tokens, generated {generated.tolist()} -> {text!r}")


if __name__ == "__main__":
    main()
