#!/usr/bin/env python3
"""Builds the LoRA adapter fixtures the Swift adapter tests compare against (issue 13, "Proof":
round trip): adapters written by PEFT itself, and PEFT's / transformers' logits for adapters and
merged folders written by this runtime.

Run by hand, not by CI (the fixtures are committed):
    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install -r scripts/requirements-finetune-fixtures.txt
    /tmp/ref/bin/python scripts/make_adapter_fixtures.py                      # step 1
    PALIGEMMA_WRITE_ADAPTER_FIXTURES=/tmp/pg-merged swift test --filter AdapterTests/ourAdapter   # step 2
    /tmp/ref/bin/python scripts/make_adapter_fixtures.py --merged /tmp/pg-merged  # step 3

Pinned (scripts/requirements-finetune-fixtures.txt): torch 2.13.0+cpu, transformers 5.24.0,
peft 0.21.2, safetensors 0.8.0, numpy 2.4.6. Seeds are fixed; a re-run reproduces every tensor and
leaves files whose contents did not change untouched.

Step 1 writes, under Tests/PaliGemmaTests/Fixtures/adapters/:
  pg1-peft/, pg2-peft/   adapter_config.json + adapter_model.safetensors as PEFT's save_pretrained
                         writes them on transformers 5.24 (keys base_model.model.model.language_model...,
                         base_model.model.model.vision_tower.encoder...; README.md removed), made with
                         init_lora_weights=False (A and B random, non-zero) on models/pg1-f32, pg2-f32
  logits.safetensors     the inputs and logits (below)
Step 2 (Swift, AdapterTests) writes pg1-ours/, pg2-ours/ with this runtime's writer (deterministic
from a seed; the test checks that it would write the same bytes today) and, into the folder named by
PALIGEMMA_WRITE_ADAPTER_FIXTURES, pg1-merged/ and pg2-merged/: `paligemma merge` of the base with
the -ours adapter (not committed: the test merges again and compares logits).
Step 3 loads the -ours adapters with PeftModel.from_pretrained and the merged folders with
PaliGemmaForConditionalGeneration.from_pretrained, checks that every tensor was taken, and adds
their logits, plus how far our merged weights are from PEFT's own merge_and_unload.

logits.safetensors, per model key (pg1, pg2):
  <key>.input_ids [T] I64, <key>.token_type_ids [T] I64, <key>.pixel_values [3, S, S] F32
    <image> x N, <bos>, 3 prompt ids, "\\n", 4 suffix ids; token_type_ids 0 for the prefix, 1 after
  <key>.<case>.logits [T - N, V] F32: the logits of the text rows (from <bos> on), from
    PaliGemmaForConditionalGeneration(float32, eager attention, token_type_ids given), eval mode;
    <case> = base, peft (the -peft adapter through PeftModel), ours (the -ours adapter through
    PeftModel), merged (transformers on our merged folder)
  metadata: versions, the adapter settings, <key>.merged.files (JSON: file -> [tensor names] of the
    merged folder transformers loaded), <key>.merged.vs_peft_merge (max |our merged weight - PEFT's
    merge_and_unload weight|)
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors import safe_open
from safetensors.torch import save_file, load_file
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import PaliGemmaForConditionalGeneration

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# The pins, the version check, the tiny models' folder and the 5.x -> hub name mapping are the
# fine-tuning fixtures' (importing that script runs no generator).
from make_finetune_fixtures import VERSIONS, FIXTURES, hub_name as hub_name_5x  # noqa: E402

OUT = os.path.join(FIXTURES, "adapters")

BOS, EOS, NEWLINE = 2, 1, 108
# PEFT-made adapters: a conv (patch_embedding), the projector ("linear"), SigLIP's q/out_proj/fc1
# and decoder projections for pg1; rsLoRA with rank 2 on q/k (SigLIP's too), gate/up and fc2 for pg2.
MODELS = {
    "pg1": dict(folder="pg1-f32", seed=31, input_seed=41,
                lora=dict(r=4, lora_alpha=8, use_rslora=False,
                          target_modules=["q_proj", "v_proj", "o_proj", "down_proj", "out_proj", "fc1", "linear",
                                          "patch_embedding"])),
    "pg2": dict(folder="pg2-f32", seed=32, input_seed=42,
                lora=dict(r=2, lora_alpha=6, use_rslora=True,
                          target_modules=["q_proj", "k_proj", "gate_proj", "up_proj", "fc2"])),
}
B_SCALE = 0.5  # lora_B after init_lora_weights=False (kaiming-uniform, bound 1/sqrt(r)) times this


def hub_name(name):
    """A PEFT key or parameter name in either spelling -> the hub's transformers 4.x spelling."""
    bare = name[len("base_model.model."):] if name.startswith("base_model.model.") else name
    if bare.startswith(("language_model.model.", "vision_tower.vision_model.", "multi_modal_projector.")):
        return bare
    return hub_name_5x(name)


def base_folder(key):
    return os.path.join(FIXTURES, "models", MODELS[key]["folder"])


def load_base(key):
    m = PaliGemmaForConditionalGeneration.from_pretrained(base_folder(key), dtype=torch.float32,
                                                          attn_implementation="eager")
    return m.eval()


def make_inputs(key, config):
    gen = torch.Generator().manual_seed(MODELS[key]["input_seed"])
    vocab, image_id = config.text_config.vocab_size, config.image_token_id
    n_img, size = config.text_config.num_image_tokens, config.vision_config.image_size
    allowed = torch.tensor([i for i in range(3, vocab) if i not in (image_id, NEWLINE)])
    prefix = allowed[torch.randint(0, len(allowed), (3,), generator=gen)]
    suffix = allowed[torch.randint(0, len(allowed), (4,), generator=gen)]
    head = torch.cat([torch.full((n_img,), image_id), torch.tensor([BOS]), prefix, torch.tensor([NEWLINE])])
    ids = torch.cat([head, suffix]).long()
    types = torch.cat([torch.zeros(len(head)), torch.ones(len(suffix))]).long()
    pixels = torch.rand((3, size, size), generator=gen) * 2 - 1
    return dict(input_ids=ids, token_type_ids=types, pixel_values=pixels, image_tokens=n_img)


def text_logits(model, inputs):
    with torch.no_grad():
        out = model(input_ids=inputs["input_ids"][None], token_type_ids=inputs["token_type_ids"][None],
                    pixel_values=inputs["pixel_values"][None], use_cache=False)
    return out.logits[0, inputs["image_tokens"]:].detach().clone()


def lora_weights(peft_model):
    """The adapter's A and B in memory, keyed by the hub spelling of the file's keys."""
    out = {}
    for name, p in peft_model.named_parameters():
        if ".lora_A." in name or ".lora_B." in name:
            out[hub_name(name)] = p.detach().clone()
    return out


def check_loaded(peft_model, folder):
    """Every tensor of the adapter file is what PEFT holds in memory, and nothing else is adapted."""
    memory = lora_weights(peft_model)
    stored = {hub_name(k): v for k, v in load_file(os.path.join(folder, "adapter_model.safetensors")).items()}
    if set(memory) != set(stored):
        raise SystemExit(f"{folder}: PEFT adapted {sorted(set(memory) ^ set(stored))[:4]} differently from the file")
    for k, v in stored.items():
        if not torch.equal(memory[k], v):
            raise SystemExit(f"{folder}: {k} was not loaded as stored")
    return len(stored)


def same_file(path, tensors, meta):
    if not os.path.exists(path):
        return False
    with safe_open(path, "pt") as old:
        return (old.metadata() or {}) == (meta or {}) and set(old.keys()) == set(tensors) and all(
            old.get_tensor(k).dtype == v.dtype and torch.equal(old.get_tensor(k), v) for k, v in tensors.items())


def make_peft_adapter(key):
    spec = MODELS[key]
    folder = os.path.join(OUT, f"{key}-peft")
    model = load_base(key)
    torch.manual_seed(spec["seed"])
    config = LoraConfig(lora_dropout=0.0, init_lora_weights=False, task_type="CAUSAL_LM", **spec["lora"])
    pm = get_peft_model(model, config)
    with torch.no_grad():
        for name, p in pm.named_parameters():
            if ".lora_B." in name:
                p.mul_(B_SCALE)
    pm.eval()
    # A relative path, not this machine's: PeftModel.from_pretrained does not read it.
    pm.peft_config["default"].base_model_name_or_path = f"Tests/PaliGemmaTests/Fixtures/models/{spec['folder']}"
    tmp = folder + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    pm.save_pretrained(tmp)
    os.remove(os.path.join(tmp, "README.md"))
    # target_modules is a Python set, saved in hash order: sort it so that re-runs write the same
    # bytes (laid out as PEFT does, json.dumps(indent=2, sort_keys=True)).
    config_path = os.path.join(tmp, "adapter_config.json")
    with open(config_path) as f:
        saved = json.load(f)
    saved["target_modules"] = sorted(saved["target_modules"])
    with open(config_path, "w") as f:
        f.write(json.dumps(saved, indent=2, sort_keys=True))
    tensors = load_file(os.path.join(tmp, "adapter_model.safetensors"))
    keys = sorted(tensors)
    unchanged = (same_file(os.path.join(folder, "adapter_model.safetensors"), tensors, {"format": "pt"})
                 and open(os.path.join(folder, "adapter_config.json")).read() == open(os.path.join(tmp, "adapter_config.json")).read())
    if unchanged:
        shutil.rmtree(tmp)
        print(f"  {key}-peft: unchanged, {len(keys)} tensors")
    else:
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(tmp, folder)
        print(f"  wrote {key}-peft: {len(keys)} tensors, e.g. {keys[0]}")
    # Reload as a user would and check that every tensor arrived.
    reloaded = PeftModel.from_pretrained(load_base(key), folder).eval()
    count = check_loaded(reloaded, folder)
    print(f"  {key}-peft reloads: {count} tensors taken as stored")
    return reloaded


def merged_structure(folder):
    files = {}
    for name in sorted(os.listdir(folder)):
        if name.endswith(".safetensors"):
            with safe_open(os.path.join(folder, name), "pt") as f:
                files[name] = sorted(f.keys())
    return files


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--merged", help="folder where the Swift helper wrote pg1-merged/ and pg2-merged/")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    tensors, meta = {}, {"versions": json.dumps(VERSIONS, sort_keys=True), "generator": "scripts/make_adapter_fixtures.py",
                         "b_scale": str(B_SCALE)}
    for key, spec in MODELS.items():
        print(key)
        base = load_base(key)
        inputs = make_inputs(key, base.config)
        tensors[f"{key}.input_ids"] = inputs["input_ids"]
        tensors[f"{key}.token_type_ids"] = inputs["token_type_ids"]
        tensors[f"{key}.pixel_values"] = inputs["pixel_values"].float()
        tensors[f"{key}.base.logits"] = text_logits(base, inputs)
        meta[f"{key}.lora"] = json.dumps(spec["lora"], sort_keys=True)

        peft_model = make_peft_adapter(key)
        tensors[f"{key}.peft.logits"] = text_logits(peft_model, inputs)
        d = (tensors[f"{key}.peft.logits"] - tensors[f"{key}.base.logits"]).abs().max().item()
        print(f"  {key}-peft changes the logits by up to {d:.3f}")

        ours = os.path.join(OUT, f"{key}-ours")
        if not os.path.isdir(ours):
            print(f"  {key}-ours is missing: run step 2 (the Swift helper), then this script again", file=sys.stderr)
            continue
        ours_model = PeftModel.from_pretrained(load_base(key), ours).eval()
        count = check_loaded(ours_model, ours)
        tensors[f"{key}.ours.logits"] = text_logits(ours_model, inputs)
        print(f"  {key}-ours: PEFT took all {count} tensors")

        if args.merged:
            merged = os.path.join(args.merged, f"{key}-merged")
            model, info = PaliGemmaForConditionalGeneration.from_pretrained(
                merged, dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
            problems = {k: v for k, v in info.items() if v}
            if problems:
                raise SystemExit(f"{merged}: transformers reports {problems}")
            model.eval()
            tensors[f"{key}.merged.logits"] = text_logits(model, inputs)
            meta[f"{key}.merged.files"] = json.dumps(merged_structure(merged), sort_keys=True)
            # Our merged weights against PEFT's own merge of the same adapter.
            peft_merged = ours_model.merge_and_unload()
            theirs = {n: p for n, p in peft_merged.state_dict().items()}
            mine = model.state_dict()
            worst = max((mine[n] - theirs[n]).abs().max().item() for n in mine)
            meta[f"{key}.merged.vs_peft_merge"] = f"{worst:.3e}"
            print(f"  {key}-merged: transformers loads it cleanly; max |our merged weight - PEFT merge| {worst:.3e}")

    path = os.path.join(OUT, "logits.safetensors")
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    if same_file(path, tensors, meta):
        print(f"logits.safetensors: unchanged, {len(tensors)} tensors")
    else:
        save_file(tensors, path, metadata=meta)
        print(f"wrote logits.safetensors: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
