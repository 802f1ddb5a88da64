#!/usr/bin/env python3
"""Side-by-side speed and memory: transformers + PyTorch vs this runtime, same checkpoint, same
prompt shape, same thread count, same machine, one run. Prints a table with ratios and writes
JSON (--out).

    python3 scripts/bench_compare.py --preset paligemma-3b-224 --threads 2 --new-tokens 16 [--f32] [--int8] [--int4]
        [--fast] [--agreement-steps 200]

--fast also runs ours with `--precision fast` (bf16 products on AMX or AVX512-BF16, where the CPU
has them) and measures how well it agrees with exact products (`bench --agreement`).

Sets up the Python reference as ../shared/PALIGEMMA.md describes (a venv at /tmp/ref with the
CPU-only torch 2.13 and transformers 5.24) if it is missing, builds the release binary, writes a
random-weight checkpoint of the preset (bf16) under /tmp if missing, then runs each side in its
own process so that peak RSS is each one's own.
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
VENV = "/tmp/ref"
PIP = ["torch==2.13.0+cpu", "transformers==5.24.0", "safetensors", "numpy", "pillow", "sentencepiece", "protobuf"]

# Runs inside the reference venv: one transformers measurement, printed as JSON.
REFERENCE = r'''
import json, resource, sys, time, torch
from transformers import LogitsProcessor, LogitsProcessorList, PaliGemmaForConditionalGeneration
folder, dtype, threads, prompt_tokens, new_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(threads)
t = time.perf_counter()
model = PaliGemmaForConditionalGeneration.from_pretrained(folder, dtype=getattr(torch, dtype)).eval()
load = time.perf_counter() - t
cfg = model.config
n, size = cfg.text_config.num_image_tokens, cfg.vision_config.image_size
g = torch.Generator().manual_seed(1)
pixels = (torch.rand((1, 3, size, size), generator=g) * 2 - 1).to(model.dtype)
text = torch.randint(3, 20000, (prompt_tokens,), generator=g)
ids = torch.cat([torch.full((n,), cfg.image_token_index), torch.tensor([2]), text, torch.tensor([108])])[None]
tt = torch.zeros_like(ids)
with torch.inference_mode():
    model.model.get_image_features(pixels)  # warm-up
    t = time.perf_counter(); model.model.get_image_features(pixels); vision = time.perf_counter() - t
    t = time.perf_counter(); model(input_ids=ids, pixel_values=pixels, token_type_ids=tt, logits_to_keep=1); ttft = time.perf_counter() - t
    # Decode time from timestamps taken as each token's logits arrive (the first right after the
    # prefill), not from generate's total minus a separately timed prefill: the two prefills need
    # not take the same time.
    stamps = []
    class Stamp(LogitsProcessor):
        def __call__(self, input_ids, scores):
            stamps.append(time.perf_counter())
            return scores
    out = model.generate(input_ids=ids, pixel_values=pixels, token_type_ids=tt, max_new_tokens=new_tokens + 1,
                         min_new_tokens=new_tokens + 1, do_sample=False, logits_processor=LogitsProcessorList([Stamp()]))
decode_ms = (stamps[-1] - stamps[0]) / (len(stamps) - 1) * 1000
print(json.dumps({"load_s": load, "vision_s": vision, "prefill_s": ttft - vision, "ttft_s": ttft,
                  "decode_ms_per_token": decode_ms, "prompt_tokens": ids.shape[1],
                  "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
'''


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, **kw)


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if not os.path.exists(py):
        sh([sys.executable, "-m", "venv", VENV])
        sh([os.path.join(VENV, "bin", "pip"), "install", "-q"] + PIP)
    return py


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="paligemma-3b-224")
    ap.add_argument("--model", help="checkpoint folder (default: a random bf16 one for --preset under /tmp)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt-tokens", type=int, default=8)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--f32", action="store_true", help="also run transformers in float32")
    ap.add_argument("--int8", action="store_true",
                    help="also bench ours on int8 weights (a folder written once by `paligemma quantize`)")
    ap.add_argument("--int4", action="store_true",
                    help="also bench ours on 4-bit weights (a folder written once by `paligemma quantize --bits 4`)")
    ap.add_argument("--fast", action="store_true", help="also bench ours with --precision fast, and its agreement")
    ap.add_argument("--agreement-steps", type=int, default=200,
                    help="with --fast: teacher-forced greedy steps compared with exact products")
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()

    py = ensure_venv()
    sh(["swift", "build", "-c", "release", "--product", "paligemma"], cwd=ROOT)
    binary = os.path.join(ROOT, ".build", "release", "paligemma")
    folder = a.model or f"/tmp/pg-random-{a.preset}-bf16"
    if not os.path.exists(os.path.join(folder, "config.json")):
        sh([binary, "random-checkpoint", "--preset", a.preset, "--dtype", "bf16", "--output", folder])

    env = dict(os.environ)
    for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        env.pop(k, None)
    results = {}
    for dtype in ["bfloat16"] + (["float32"] if a.f32 else []):
        out = sh([py, "-c", REFERENCE, folder, dtype, str(a.threads), str(a.prompt_tokens), str(a.new_tokens)],
                 capture_output=True, env=env)
        results[f"transformers {dtype}"] = json.loads(out.stdout.strip().splitlines()[-1])
    def ours_bench(model, extra=()):
        out = sh([binary, "bench", "--model", model, "--threads", str(a.threads), "--prompt-tokens", str(a.prompt_tokens),
                  "--new-tokens", str(a.new_tokens), "--runs", "2", "--json", *extra], capture_output=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    results["swift"] = ours_bench(folder, ["--floors", "--precision", "exact"])
    if a.fast:
        results["swift fast"] = ours_bench(folder, ["--floors", "--precision", "fast"])
        out = sh([binary, "bench", "--model", folder, "--threads", str(a.threads), "--prompt-tokens", str(a.prompt_tokens),
                  "--agreement", str(a.agreement_steps), "--precision", "fast"], capture_output=True)
        results["swift fast agreement"] = json.loads(out.stdout.strip().splitlines()[-1])
    for bits, wanted in ((8, a.int8), (4, a.int4)):
        if not wanted:
            continue
        quantized = folder.rstrip("/") + f"-int{bits}"
        if not os.path.exists(os.path.join(quantized, "config.json")):
            sh([binary, "quantize", "--model", folder, "--output", quantized, "--bits", str(bits)])
        results[f"swift int{bits}"] = ours_bench(quantized, ["--floors", "--precision", "exact"])

    keys = ["load_s", "vision_s", "prefill_s", "ttft_s", "decode_ms_per_token", "peak_rss_bytes"]
    ours = results["swift"]
    print(f"{a.preset}, {a.threads} threads, {ours['prompt_tokens']} prompt tokens, {a.new_tokens} new tokens, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'':28}" + "".join(f"{k:>22}" for k in keys))
    for name, r in results.items():
        if "ttft_s" not in r:
            continue
        cells = []
        for k in keys:
            v = r[k]
            cell = f"{v / 2**30:.2f} GiB" if k == "peak_rss_bytes" else f"{v:.3f}"
            if name.startswith("transformers") and ours.get(k):
                cell += f" ({v / ours[k]:.2f}x)"
            cells.append(f"{cell:>22}")
        print(f"{name:28}" + "".join(cells))
    print("(x) = transformers / swift (exact): above 1 means swift is faster or smaller")
    fast = results.get("swift fast")
    if fast:
        for name, r in results.items():
            if name.startswith("transformers"):
                print(f"{name} / swift fast: " + ", ".join(f"{k} {r[k] / fast[k]:.2f}x" for k in keys if fast.get(k)))
    for name in ("swift", "swift fast", "swift int8", "swift int4"):
        f = results.get(name, {}).get("floors")
        if f:
            r = results[name]
            def probes(key):  # every probe bench took (before and after its runs), the best used
                return "/".join(f"{v:.0f}" for v in f.get(key, []))
            print(f"{name} floors here (read {f['read_bandwidth_gbs']:.1f} GB/s of {probes('read_bandwidth_gbs_probes')}, "
                  f"FMA peak {f['fma_peak_gflops']:.0f} GFLOP/s of {probes('fma_peak_gflops_probes')}, "
                  f"{f['bf16_kernel']} peak {f['bf16_peak_gflops']:.0f} GFLOP/s): "
                  f"decode {f['decode_floor_ms']:.0f} ms, prefill {f['prefill_floor_s']:.2f} s (bf16 {f['bf16_prefill_floor_s']:.2f} s), "
                  f"vision {f['vision_floor_s']:.2f} s (bf16 {f['bf16_vision_floor_s']:.2f} s)")
            if f.get("integer_prefill_floor_s"):  # int8 / 4-bit matrices on integer dot products
                print(f"{'':6}integer peaks: int8 {f['int8_dot_instruction']} {f['int8_dot_peak_gops']:.0f} GOP/s, "
                      f"4-bit {f['int4_dot_instruction']} {f['int4_dot_peak_gops']:.0f} GOP/s: "
                      f"prefill floor {f['integer_prefill_floor_s']:.2f} s")
            print(f"{'':6}share of the floor of the instructions used ({r['precision']}, {r['fast_kernel']}): "
                  f"vision {r['vision_floor_share']:.0%}, prefill {r['prefill_floor_share']:.0%}, decode {r['decode_floor_share']:.0%}")
    g = results.get("swift fast agreement")
    if g:
        print(f"fast vs exact over {g['steps']} teacher-forced steps ({g['fast_kernel']}): top-1 agreement {g['top1_agreement']:.1%}, "
              f"max |logit diff| {g['max_logit_diff']:.4f}, mean {g['mean_logit_diff']:.5f} (largest logit {g['max_abs_logit']:.2f})")
    if a.out:
        with open(a.out, "w") as f:
            json.dump({"preset": a.preset, "threads": a.threads, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
