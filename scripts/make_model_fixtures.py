#!/usr/bin/env python3
"""Builds the tiny random PaliGemma checkpoints and transformers reference outputs that the
Swift parity tests (Tests/PaliGemmaTests/ModelParityTests.swift) compare against.

Run by hand, not by CI:
    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install "torch==2.13.0+cpu" "transformers==5.24.0" "safetensors==0.8.0" "numpy==2.4.6"
    /tmp/ref/bin/python scripts/make_model_fixtures.py

Pinned: torch 2.13.0+cpu, transformers 5.24.0, safetensors 0.8.0, numpy 2.4.6. Seeds are fixed, so
re-running reproduces the files (up to torch's own run-to-run determinism on the CPU).

Each fixture is a Hugging Face folder under Tests/PaliGemmaTests/Fixtures/models/NAME and a
reference file Tests/PaliGemmaTests/Fixtures/reference/NAME.safetensors holding:
  pixel_values [1,3,S,S], input_ids [T] (the prompt, all prefix), suffix_ids [U],
  vision_out [N,Dv] (vision tower incl. post_layernorm), projector_out [N,D],
  logits_prompt [T,V] (prompt forward, prefix-LM mask), logits_full [T+U,V] (prompt + suffix
  with token_type_ids 0/1), greedy_ids [G], greedy_logits [G,V] (raw logits before each greedy pick).
For bfloat16 checkpoints these are computed in float32 from the same (bf16-valued) weights, with
the embedding scale rounded to bf16 as the bf16 model does; the native bf16 run of transformers is
stored beside them with the prefix "bf16_" (its activations are rounded to bf16 after every op,
ours stay float32, so the two are compared with a looser bound).
"""
import json
import math
import os
import shutil
import sys

import numpy as np
import torch
import transformers
from safetensors.torch import save_file, load_file
from transformers import PaliGemmaConfig, PaliGemmaForConditionalGeneration

EXPECTED = {"torch": "2.13.0+cpu", "transformers": "5.24.0"}
for mod, want in (("torch", torch.__version__), ("transformers", transformers.__version__)):
    if want != EXPECTED[mod]:
        print(f"warning: {mod} {want} differs from the pinned {EXPECTED[mod]}", file=sys.stderr)

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "PaliGemmaTests", "Fixtures")
IMAGE_TOKEN = 300
VOCAB = 320
NEWLINE = 10  # stands in for "\n" (id 108 in the real vocabulary)
BOS = 2

FIXTURES = [
    # PaliGemma 1: Gemma decoder, multi-query attention, float32, the hub's 4.x names and a
    # hub-style config.json (many keys left to their defaults).
    dict(name="pg1-f32", family="gemma", dtype=torch.float32, spelling="hub", shards=1, seed=1,
         vision=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                     image_size=56, patch_size=14),
         text=dict(hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=1, head_dim=16)),
    # PaliGemma 1 in bfloat16, grouped-query attention, head_dim*heads != width, width whose
    # sqrt is not exact in bf16; saved as transformers 5.24 writes it.
    dict(name="pg1-bf16", family="gemma", dtype=torch.bfloat16, spelling="native", shards=1, seed=32,
         vision=dict(hidden_size=48, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                     image_size=28, patch_size=7),
         text=dict(hidden_size=48, intermediate_size=80, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=24)),
    # PaliGemma 2: Gemma 2 decoder, both soft caps active, query_pre_attn_scalar != head_dim,
    # sliding window shorter than the prompt, float32, sharded into three files.
    dict(name="pg2-f32", family="gemma2", dtype=torch.float32, spelling="hub", shards=3, seed=3,
         vision=dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
                     image_size=56, patch_size=14),
         text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=16, query_pre_attn_scalar=24,
                   attn_logit_softcapping=3.0, final_logit_softcapping=4.0, sliding_window=6)),
    # PaliGemma 2 in bfloat16, multi-query, larger head_dim, transformers 5.24 names.
    dict(name="pg2-bf16", family="gemma2", dtype=torch.bfloat16, spelling="native", shards=1, seed=4,
         vision=dict(hidden_size=32, intermediate_size=40, num_hidden_layers=1, num_attention_heads=2,
                     image_size=42, patch_size=14),
         text=dict(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=1, head_dim=32, query_pre_attn_scalar=48,
                   attn_logit_softcapping=5.0, final_logit_softcapping=8.0, sliding_window=5)),
]

OUTPUT_GAIN = float(os.environ.get("OUTPUT_GAIN", "8"))
EMBED_STD = float(os.environ.get("EMBED_STD", "0.05"))
FINAL_NORM_MEAN = float(os.environ.get("FINAL_NORM_MEAN", "3"))
PROMPT_TEXT = 6   # random text tokens after <bos>
SUFFIX = 4
GENERATE = 6


def build_config(fx):
    text = dict(model_type=fx["family"], vocab_size=VOCAB, **fx["text"])
    vision = dict(model_type="siglip_vision_model", vision_use_head=False, **fx["vision"])
    cfg = PaliGemmaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN,
                          projection_dim=fx["text"]["hidden_size"], hidden_size=fx["text"]["hidden_size"],
                          vocab_size=VOCAB)
    cfg._attn_implementation = "eager"
    cfg.text_config._attn_implementation = "eager"
    cfg.vision_config._attn_implementation = "eager"
    return cfg


def reinit(model, gen):
    """Non-trivial values everywhere: norms and biases away from identity and zero."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            shape = tuple(p.shape)
            if name.endswith("embed_tokens.weight"):
                v = torch.randn(shape, generator=gen) * EMBED_STD
            elif name.endswith("language_model.norm.weight"):
                # final norm scales up the (small) hidden state so the logits span several units
                v = FINAL_NORM_MEAN + 0.3 * torch.randn(shape, generator=gen)
            elif "position_embedding" in name:
                v = torch.randn(shape, generator=gen) * 0.5
            elif "layernorm" in name or "layer_norm" in name or name.endswith("norm.weight"):
                if "vision_tower" in name:  # LayerNorm: scale around 1, shift around 0
                    v = (1 + 0.2 * torch.randn(shape, generator=gen)) if name.endswith("weight") else 0.1 * torch.randn(shape, generator=gen)
                else:  # Gemma RMSNorm stores offsets from 1
                    v = 0.3 * torch.randn(shape, generator=gen)
            elif name.endswith("bias"):
                v = 0.1 * torch.randn(shape, generator=gen)
            else:
                fan_in = int(np.prod(shape[1:]))
                # Larger output projections in the decoder, so that the layers, not the
                # (tied) embedding of the last token, decide the next token.
                gain = OUTPUT_GAIN if ("o_proj" in name or "down_proj" in name) else 1.0
                v = gain * torch.randn(shape, generator=gen) / math.sqrt(fan_in)
            p.copy_(v.to(p.dtype))


def hub_name(name):
    """transformers 5.24 in-memory names (model.vision_tower.*, model.language_model.*, ...) ->
    the hub's 4.x spelling (vision_tower.vision_model.*, language_model.model.*, ...)."""
    for old, new in (("model.vision_tower.vision_model.", "vision_tower.vision_model."),
                     ("model.vision_tower.", "vision_tower.vision_model."),
                     ("model.language_model.", "language_model.model."),
                     ("model.multi_modal_projector.", "multi_modal_projector.")):
        if name.startswith(old):
            return new + name[len(old):]
    raise ValueError(f"unexpected parameter name {name}")


def write_hub_folder(model, cfg, fx, out):
    """Writes the weights under 4.x names (optionally sharded) and a hub-style config.json."""
    os.makedirs(out, exist_ok=True)
    state = {hub_name(k): v.contiguous() for k, v in model.state_dict().items() if not k.startswith("lm_head")}
    names = sorted(state)
    shards = fx["shards"]
    if shards == 1:
        save_file(state, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    else:
        chunks = [names[i::shards] for i in range(shards)]
        weight_map = {}
        total = 0
        for i, chunk in enumerate(chunks):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            save_file({k: state[k] for k in chunk}, os.path.join(out, fname), metadata={"format": "pt"})
            for k in chunk:
                weight_map[k] = fname
                total += state[k].numel() * state[k].element_size()
        with open(os.path.join(out, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    t = fx["text"]
    text = {"model_type": fx["family"], "hidden_size": t["hidden_size"], "intermediate_size": t["intermediate_size"],
            "num_attention_heads": t["num_attention_heads"], "num_hidden_layers": t["num_hidden_layers"],
            "num_key_value_heads": t["num_key_value_heads"], "head_dim": t["head_dim"],
            "num_image_tokens": cfg.text_config.num_image_tokens, "torch_dtype": str(fx["dtype"]).replace("torch.", ""),
            "vocab_size": VOCAB}
    if fx["family"] == "gemma2":
        text.update({"query_pre_attn_scalar": t["query_pre_attn_scalar"], "hidden_activation": "gelu_pytorch_tanh",
                     "attn_logit_softcapping": t["attn_logit_softcapping"],
                     "final_logit_softcapping": t["final_logit_softcapping"],
                     "sliding_window": t["sliding_window"], "cache_implementation": "hybrid"})
    v = fx["vision"]
    vision = {"model_type": "siglip_vision_model", "hidden_size": v["hidden_size"],
              "intermediate_size": v["intermediate_size"], "num_attention_heads": v["num_attention_heads"],
              "num_hidden_layers": v["num_hidden_layers"], "image_size": v["image_size"], "patch_size": v["patch_size"],
              "num_image_tokens": cfg.text_config.num_image_tokens, "projection_dim": t["hidden_size"],
              "projector_hidden_act": "gelu_fast", "vision_use_head": False}
    config = {"_name_or_path": "tiny-" + fx["name"], "architectures": ["PaliGemmaForConditionalGeneration"],
              "bos_token_id": 2, "eos_token_id": 1, "hidden_size": t["hidden_size"], "ignore_index": -100,
              "image_token_index": IMAGE_TOKEN, "model_type": "paligemma", "pad_token_id": 0,
              "projection_dim": t["hidden_size"], "text_config": text,
              "torch_dtype": str(fx["dtype"]).replace("torch.", ""), "transformers_version": "4.42.0.dev0",
              "vision_config": vision, "vocab_size": VOCAB}
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


@torch.no_grad()
def reference(model, pixel_values, input_ids, suffix_ids):
    m = model.model
    out = {}
    out["vision_out"] = m.vision_tower(pixel_values).last_hidden_state[0]
    out["projector_out"] = m.get_image_features(pixel_values).pooler_output[0]
    ids = input_ids[None]
    tt = torch.zeros_like(ids)
    out["logits_prompt"] = model(input_ids=ids, pixel_values=pixel_values, token_type_ids=tt).logits[0]
    full = torch.cat([input_ids, suffix_ids])[None]
    tt_full = torch.cat([torch.zeros_like(input_ids), torch.ones_like(suffix_ids)])[None]
    out["logits_full"] = model(input_ids=full, pixel_values=pixel_values, token_type_ids=tt_full).logits[0]
    gen = model.generate(input_ids=ids, pixel_values=pixel_values, token_type_ids=tt, max_new_tokens=GENERATE,
                         do_sample=False, output_logits=True, return_dict_in_generate=True,
                         eos_token_id=None, pad_token_id=0)
    out["greedy_ids"] = gen.sequences[0, ids.shape[1]:]
    out["greedy_logits"] = torch.stack([l[0] for l in gen.logits])
    return out


def main():
    for sub in ("models", "reference"):
        os.makedirs(os.path.join(ROOT, sub), exist_ok=True)
    for fx in FIXTURES:
        torch.manual_seed(fx["seed"])
        gen = torch.Generator().manual_seed(fx["seed"])
        cfg = build_config(fx)
        model = PaliGemmaForConditionalGeneration(cfg).eval()
        reinit(model, gen)
        model = model.to(fx["dtype"])
        folder = os.path.join(ROOT, "models", fx["name"])
        shutil.rmtree(folder, ignore_errors=True)
        if fx["spelling"] == "hub":
            write_hub_folder(model, cfg, fx, folder)
        else:
            model.save_pretrained(folder)
        # The folder must load in transformers and reproduce the in-memory model.
        reloaded = PaliGemmaForConditionalGeneration.from_pretrained(folder, dtype=fx["dtype"], attn_implementation="eager").eval()

        S = fx["vision"]["image_size"]
        n_img = cfg.text_config.num_image_tokens
        pixel_values = (torch.rand((1, 3, S, S), generator=gen) * 2 - 1)
        text = torch.randint(3, IMAGE_TOKEN, (PROMPT_TEXT,), generator=gen)
        input_ids = torch.cat([torch.full((n_img,), IMAGE_TOKEN), torch.tensor([BOS]), text, torch.tensor([NEWLINE])])
        suffix_ids = torch.randint(3, IMAGE_TOKEN, (SUFFIX,), generator=gen)

        tensors = {"pixel_values": pixel_values.float(), "input_ids": input_ids.long(), "suffix_ids": suffix_ids.long()}
        if fx["dtype"] == torch.float32:
            ref = reference(model, pixel_values, input_ids, suffix_ids)
            check = reference(reloaded, pixel_values, input_ids, suffix_ids)
        else:
            native = reference(model, pixel_values.to(fx["dtype"]), input_ids, suffix_ids)
            for k, v in native.items():
                tensors["bf16_" + k] = v.float() if v.is_floating_point() else v.long()
            # float32 compute from the same bf16 weights; the bf16 model rounds sqrt(width) to bf16.
            up = reloaded.float()
            emb = up.model.language_model.embed_tokens
            emb.embed_scale.fill_(float(torch.tensor(cfg.text_config.hidden_size ** 0.5).to(torch.bfloat16)))
            ref = reference(up, pixel_values, input_ids, suffix_ids)
            check = ref
        for k, v in ref.items():
            if v.is_floating_point():
                diff = (v.float() - check[k].float()).abs().max().item()
                assert diff <= 1e-5, f"{fx['name']}: reloaded folder differs on {k} by {diff}"
            tensors[k] = v.float() if v.is_floating_point() else v.long()
        tensors = {k: v.contiguous() for k, v in tensors.items()}
        save_file(tensors, os.path.join(ROOT, "reference", fx["name"] + ".safetensors"),
                  metadata={"generator": "scripts/make_model_fixtures.py", "torch": torch.__version__,
                            "transformers": transformers.__version__})
        print(f"{fx['name']}: prompt {input_ids.numel()} tokens, greedy {tensors['greedy_ids'].tolist()}, "
              f"logit range {tensors['logits_prompt'].min().item():.2f}..{tensors['logits_prompt'].max().item():.2f}")


if __name__ == "__main__":
    main()
