#!/usr/bin/env python3
"""One LoRA training step, side by side: transformers + PEFT vs this runtime, same checkpoint,
same example shape (image tokens + <bos> + prompt + "\\n" prefix, supervised suffix + <eos>),
same thread count, same machine, one run. Prints seconds per example and peak RSS with ratios;
writes JSON with --out.

    python3 scripts/bench_train_compare.py --model /tmp/pg-random --threads 2 [--runs 2] [--int4] [--fast] [--reference bf16,f32]

The reference venv is the one ../shared/PALIGEMMA.md describes (/tmp/ref with torch 2.13.0+cpu,
transformers 5.24.0 and peft; see scripts/requirements-finetune-fixtures.txt). Each side runs
in its own process, so peak RSS is each one's own. transformers trains in the checkpoint's dtype
(bf16 here) with PEFT's defaults for the rest: LoRA r 8, alpha 16, dropout 0, the q/k/v/o/gate/
up/down targets (SigLIP's q/k/v match too), AdamW; ours the same (float32 adapters over the
stored bf16 base). --int4 adds our 4-bit base (`--quantize int4`; PEFT has no CPU 4-bit base).
--reference picks transformers' base dtypes (default bf16; f32 loads the base in float32: on CPUs
without bf16 dot products PyTorch's bf16 products are slow, and float32 is what a user there would
train in). Ratios are against the first reference row.
"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VENV = "/tmp/ref"

REFERENCE = r'''
import json, resource, sys, time, torch
from transformers import PaliGemmaForConditionalGeneration
from peft import LoraConfig, get_peft_model
folder, threads, prompt_tokens, suffix_tokens, runs, dtype = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), getattr(torch, sys.argv[6])
torch.set_num_threads(threads)
model = PaliGemmaForConditionalGeneration.from_pretrained(folder, dtype=dtype, attn_implementation="eager")
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0,
    target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
model.train()
cfg = model.config
n, size = cfg.text_config.num_image_tokens, cfg.vision_config.image_size
g = torch.Generator().manual_seed(1)
pixels = (torch.rand((1, 3, size, size), generator=g) * 2 - 1).to(dtype)
text = torch.randint(3, 20000, (prompt_tokens,), generator=g)
suffix = torch.randint(3, 20000, (suffix_tokens,), generator=g)
prefix = torch.cat([torch.full((n,), cfg.image_token_index), torch.tensor([2]), text, torch.tensor([108])])
ids = torch.cat([prefix, suffix, torch.tensor([1])])[None]
tt = torch.cat([torch.zeros(prefix.shape[0], dtype=torch.long), torch.ones(suffix_tokens + 1, dtype=torch.long)])[None]
labels = torch.where(tt == 1, ids, torch.full_like(ids, -100))
opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
steps, losses = [], []
for _ in range(runs):
    t = time.perf_counter()
    out = model(input_ids=ids, pixel_values=pixels, token_type_ids=tt, labels=labels)
    out.loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step(); opt.zero_grad()
    steps.append(time.perf_counter() - t)
    losses.append(out.loss.item())
print(json.dumps({"step_seconds": steps, "seconds_per_step": steps[-1], "loss": losses, "trainable_values": trainable,
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
'''


def run(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-tokens", type=int, default=16)
    ap.add_argument("--suffix-tokens", type=int, default=32)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--int4", action="store_true")
    ap.add_argument("--fast", action="store_true", help="also ours with --precision fast (bf16 products, forward and backward)")
    ap.add_argument("--reference", default="bf16", help="transformers base dtypes, comma-separated: bf16, f32")
    ap.add_argument("--out")
    a = ap.parse_args()
    binary = os.path.join(ROOT, ".build/release/paligemma")
    subprocess.run(["swift", "build", "-c", "release", "--product", "paligemma"], cwd=ROOT, check=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
    rows = {}
    dtypes = {"bf16": "bfloat16", "f32": "float32"}
    for d in a.reference.split(","):
        if d not in dtypes:
            sys.exit(f"--reference: unknown dtype {d!r} (bf16, f32)")
    for name, dtype in [(f"transformers + PEFT, {d}", dtypes[d]) for d in a.reference.split(",")]:
        rows[name] = run([f"{VENV}/bin/python", "-c", REFERENCE, a.model, str(a.threads),
                          str(a.prompt_tokens), str(a.suffix_tokens), str(a.runs), dtype], env)
    ours = [binary, "bench", "--model", a.model, "--train", "--json", "--threads", str(a.threads), "--runs", str(a.runs),
            "--prompt-tokens", str(a.prompt_tokens), "--suffix-tokens", str(a.suffix_tokens)]
    rows["this runtime, bf16"] = run(ours + ["--precision", "exact"])
    if a.fast:
        rows["this runtime, bf16, fast"] = run(ours + ["--precision", "fast"])
    if a.int4:
        rows["this runtime, 4-bit base"] = run(ours + ["--precision", "exact", "--quantize", "int4"])
    if a.int4 and a.fast:
        rows["this runtime, 4-bit base, fast"] = run(ours + ["--precision", "fast", "--quantize", "int4"])
    ref = next(iter(rows.values()))
    print(f"{'':34} {'s/step':>8} {'ex/s':>8} {'peak RSS':>10} {'speed ratio':>12} {'memory ratio':>13}")
    for name, r in rows.items():
        s, rss = r["seconds_per_step"], r["peak_rss_bytes"] / 2**30
        print(f"{name:34} {s:8.2f} {1 / s:8.3f} {rss:8.2f} GiB {ref['seconds_per_step'] / s:11.2f}x "
              f"{ref['peak_rss_bytes'] / r['peak_rss_bytes']:12.2f}x")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
