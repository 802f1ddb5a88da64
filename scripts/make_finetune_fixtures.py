#!/usr/bin/env python3
"""Builds the PyTorch reference losses, gradients and optimiser trajectories that the Swift
fine-tuning tests compare against (issue 13, "Proof": gradients and trajectory).

Run by hand, not by CI (the fixtures are committed):
    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install -r scripts/requirements-finetune-fixtures.txt
    /tmp/ref/bin/python scripts/make_finetune_fixtures.py [--check-f64]

Pinned (also in scripts/requirements-finetune-fixtures.txt): torch 2.13.0+cpu, transformers 5.24.0,
peft 0.21.2, safetensors 0.8.0, numpy 2.4.6 (accelerate 1.15.0 comes with peft). Seeds are fixed,
so re-running reproduces the files (up to torch's own run-to-run determinism on the CPU).
`--check-f64` also recomputes every gradient and trajectory in float64 and prints how far the
float32 reference is from it (the floor any float32 implementation can be held to); it writes
nothing extra.

Inputs: the tiny checkpoints Tests/PaliGemmaTests/Fixtures/models/{pg1-f32,pg2-f32} (made by
scripts/make_model_fixtures.py), loaded with PaliGemmaForConditionalGeneration.from_pretrained,
float32, attn_implementation="eager", in train() mode (the script checks that train() and eval()
give bit-identical losses and gradients: every dropout rate in these configs is 0).

Output: Tests/PaliGemmaTests/Fixtures/finetune/<model>-<case>.safetensors (see README.md there).

Batch (3 examples, each run as its own batch-of-1 forward, so no padding is involved):
  input_ids      = <image> x N, <bos>=2, P random text ids, "\n"=108, U random text ids, <eos>=1
  token_type_ids = 0 for image, bos, prefix and "\n"; 1 for suffix and eos
  labels         = input_ids with -100 where token_type_ids == 0 (unshifted, as transformers'
                   processor builds them; the loss shifts by one: logits at t predict labels[t+1])
  pixel_values   = uniform in [-1, 1], [3, S, S]
  Text ids are drawn uniformly from [3, vocab) without the image id and without 108.
  (P, U) are fixed per example (see MODELS) so that total lengths differ, P covers 1..5 and U 2..6;
  for pg2 one example has U+1 = 7 supervised tokens, more than the sliding window (6).

Several images (the <model>-full-images files): the same layout with 2, 1 and 3 images for the three
examples (IMAGES_PER_EXAMPLE, seed + 100): input_ids start with <image> x N for each image in turn,
then <bos>, as PaliGemmaProcessor lays out a list of images, and pixel_values is [I,3,S,S]
(transformers encodes every image and fills the image tokens in order).

Keys in each file (all float tensors F32, ids I64):
  example.{i}.pixel_values [3,S,S] ([I,3,S,S] in the -images files); example.{i}.input_ids /
  token_type_ids / labels [T_i]
  loss.tokens   [1]  sum of CE over all supervised (shifted) positions of the batch / their count
                     (transformers' default reduction)
  loss.examples [1]  per-example mean CE, then mean over the examples (big_vision's)
  init.<name>   the trainable tensor's value before the step (or before step 1 of a trajectory)
  grad.<name>   d loss.tokens / d tensor
  grad_examples.<name>   (lora files only) d loss.examples / d tensor
  step.loss / step.lr / step.grad_norm [10]   (trajectory files) loss.tokens computed before
                     that step's update, the learning rate that update used, the global L2 norm
                     of the gradient before clipping
  final.<name>  (trajectory files) the tensor after the 10 updates
<name> is the hub's (transformers 4.x) spelling: language_model.model.layers.0.self_attn.q_proj.weight,
vision_tower.vision_model.encoder.layers.1.mlp.fc1.bias, multi_modal_projector.linear.weight; LoRA
tensors are PEFT's adapter-file key without "base_model.model.", in the same spelling:
language_model.model.layers.0.self_attn.q_proj.lora_A.weight. transformers 5.24 names modules
model.language_model.layers.*, model.vision_tower.encoder.* (no vision_model), model.multi_modal_projector.*;
hub_name() maps them back. The tied output head has no key of its own: its gradient is summed into
language_model.model.embed_tokens.weight (the same torch Parameter).
"""
import argparse
import copy
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import transformers
import peft
import safetensors
from safetensors import safe_open
from safetensors.torch import save_file
from peft import LoraConfig, get_peft_model
from transformers import PaliGemmaForConditionalGeneration, get_cosine_schedule_with_warmup

PINNED = {"torch": "2.13.0+cpu", "transformers": "5.24.0", "peft": "0.21.2", "safetensors": "0.8.0",
          "numpy": "2.4.6"}
VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__,
            "safetensors": safetensors.__version__, "numpy": np.__version__}
for mod, want in PINNED.items():
    if VERSIONS[mod] != want:
        print(f"warning: {mod} {VERSIONS[mod]} differs from the pinned {want}", file=sys.stderr)

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "PaliGemmaTests", "Fixtures")
OUT = os.path.join(FIXTURES, "finetune")
GENERATOR = "scripts/make_finetune_fixtures.py"

BOS, EOS, NEWLINE = 2, 1, 108
MODELS = {
    # (prefix text ids P, suffix text ids U) per example; U excludes <eos>.
    "pg1": dict(folder="pg1-f32", seed=101, lengths=[(2, 6), (1, 2), (5, 4)]),
    "pg2": dict(folder="pg2-f32", seed=202, lengths=[(4, 6), (1, 3), (3, 2)]),
}
IMAGE_ID = {"pg1": 300, "pg2": 300}  # checked against config.json in make_batch
# transformers 5.24's mask (masking_utils: causal [and window] OR blockwise_overlay(token_type_ids == 0)).
MASK = {"pg1": "query q sees key k iff k <= q or both are prefix tokens (token_type_ids 0)",
        "pg2": "query q sees key k iff (k <= q and, on sliding layers 0 and 2, q - k < 6) or both are prefix "
               "tokens (token_type_ids 0: bidirectional, no window inside the prefix); layer 1 is full attention"}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LORA_R, LORA_ALPHA = 4, 8
LORA_SEED = 7  # torch.manual_seed before get_peft_model: A and B both get nn.Linear's default init
# B is then multiplied by this. PEFT's init_lora_weights=False leaves B at nn.Linear's default init
# (bound 1/sqrt(r) = 0.5), which makes pg1's loss so sharp that SGD at lr 0.05 oscillates and 10 steps
# amplify float32 rounding to 6e-5 relative in the loss (measured against float64), above the 1e-5 bound
# the Swift test uses. With B * 0.3 every trajectory decreases smoothly and float32 stays within 1e-6.
LORA_B_SCALE = 0.3
# Gradients that are zero in exact arithmetic: a bias on SigLIP's keys adds the same amount to every
# attention logit of a query, which softmax ignores. PyTorch's float32 values for them are rounding
# noise (about 1e-8, against about 0.1 for the query bias next to them).
EXACT_ZERO = ("self_attn.k_proj.bias",)
STEPS = 10
SGD = dict(lr=0.05)
ADAMW = dict(lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, clip=1.0, warmup=2)

LOSS_TOKENS = ("sum over the batch of cross-entropy at every supervised shifted position (logits[t] vs "
               "labels[t+1], labels != -100) divided by the batch's total number of supervised positions "
               "(transformers' default)")
LOSS_EXAMPLES = "per example: mean cross-entropy over its supervised shifted positions; then mean over examples (big_vision)"
COSINE = ("transformers.get_cosine_schedule_with_warmup(num_warmup_steps=2, num_training_steps=10, num_cycles=0.5): "
          "lr_k = base_lr * (k / 2 if k < 2 else max(0, 0.5 * (1 + cos(pi * (k - 2) / 8)))) for update k = 0..9 "
          "(so update 0 uses lr 0)")
ADAMW_RULE = ("torch.optim.AdamW (foreach=False), t = k+1: p *= 1 - lr*wd; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; "
              "p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps); weight decay on every trainable tensor, "
              "g is the clipped gradient")
CLIP_RULE = ("torch.nn.utils.clip_grad_norm_(max_norm=1.0): norm = sqrt(sum over tensors of ||g||^2); "
             "g *= min(1, 1.0 / (norm + 1e-6))")
SGD_RULE = "torch.optim.SGD (foreach=False, no momentum, no weight decay): p -= lr * g; constant lr; no clipping"


def hub_name(name):
    """transformers 5.24 / PEFT names -> the hub's transformers 4.x spelling."""
    if name.startswith("base_model.model."):
        name = name[len("base_model.model."):]
    name = name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B.")
    for old, new in (("model.vision_tower.vision_model.", "vision_tower.vision_model."),
                     ("model.vision_tower.", "vision_tower.vision_model."),
                     ("model.language_model.", "language_model.model."),
                     ("model.multi_modal_projector.", "multi_modal_projector.")):
        if name.startswith(old):
            return new + name[len(old):]
    raise ValueError(f"unexpected parameter name {name}")


def load_base(key):
    folder = os.path.join(FIXTURES, "models", MODELS[key]["folder"])
    return PaliGemmaForConditionalGeneration.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager")


IMAGES_PER_EXAMPLE = [2, 1, 3]


def make_batch(key, config, images=None):
    """The batch; with `images` (a count per example), examples over several images each."""
    spec = MODELS[key]
    gen = torch.Generator().manual_seed(spec["seed"] + (100 if images else 0))
    vocab = config.text_config.vocab_size
    image_id = config.image_token_id
    assert image_id == IMAGE_ID[key], image_id
    if key == "pg2":
        assert list(config.text_config.layer_types) == ["sliding_attention", "full_attention", "sliding_attention"]
        assert config.text_config.sliding_window == 6
    n_img = config.text_config.num_image_tokens
    size = config.vision_config.image_size
    assert NEWLINE < vocab
    allowed = torch.tensor([i for i in range(3, vocab) if i not in (image_id, NEWLINE)])
    batch = []
    for i, (p_len, u_len) in enumerate(spec["lengths"]):
        count = images[i] if images else None
        pixel_values = torch.rand((count or 1, 3, size, size), generator=gen) * 2 - 1
        if not count:
            pixel_values = pixel_values[0]
        prefix = allowed[torch.randint(0, len(allowed), (p_len,), generator=gen)]
        suffix = allowed[torch.randint(0, len(allowed), (u_len,), generator=gen)]
        head = torch.cat([torch.full((n_img * (count or 1),), image_id), torch.tensor([BOS]), prefix, torch.tensor([NEWLINE])])
        tail = torch.cat([suffix, torch.tensor([EOS])])
        input_ids = torch.cat([head, tail]).long()
        token_type_ids = torch.cat([torch.zeros(len(head)), torch.ones(len(tail))]).long()
        labels = torch.where(token_type_ids == 0, torch.full_like(input_ids, -100), input_ids)
        batch.append(dict(pixel_values=pixel_values, input_ids=input_ids, token_type_ids=token_type_ids, labels=labels))
    lengths = [len(ex["input_ids"]) for ex in batch]
    assert len(set(lengths)) == len(lengths), lengths
    return batch


def forward(model, ex, labels=False):
    dtype = next(model.parameters()).dtype
    pixels = ex["pixel_values"]
    pixels = pixels[None] if pixels.dim() == 3 else pixels  # [I, 3, S, S]: one prompt's images
    kwargs = dict(input_ids=ex["input_ids"][None], pixel_values=pixels.to(dtype),
                  token_type_ids=ex["token_type_ids"][None], use_cache=False)
    if labels:
        kwargs["labels"] = ex["labels"][None]
    return model(**kwargs)


def losses(model, batch):
    """(loss.tokens, loss.examples) as autograd scalars, from one batch-of-1 forward per example."""
    sums, counts = [], []
    for ex in batch:
        logits = forward(model, ex).logits[0]
        target = ex["labels"][1:]
        keep = target != -100
        sums.append(F.cross_entropy(logits[:-1][keep], target[keep], reduction="sum"))
        counts.append(int(keep.sum()))
    tokens = torch.stack(sums).sum() / sum(counts)
    examples = torch.stack([s / c for s, c in zip(sums, counts)]).mean()
    return tokens, examples


def check_manual_loss(model, batch):
    """The manual cross-entropy equals transformers' own loss (labels passed) on each example."""
    with torch.no_grad():
        for ex in batch:
            own = forward(model, ex, labels=True).loss
            logits = forward(model, ex).logits[0]
            target = ex["labels"][1:]
            keep = target != -100
            manual = F.cross_entropy(logits[:-1][keep], target[keep])
            assert torch.allclose(own, manual, rtol=1e-6, atol=0), (own.item(), manual.item())
    return own.item(), manual.item()


def build(key, method, rslora=False, dtype=torch.float32):
    """The model with exactly the method's tensors trainable; returns (model, {hub name: Parameter})."""
    model = load_base(key)
    if method == "lora":
        # The adapter is initialised in float32 (then converted), so a float64 check starts from the same values.
        torch.manual_seed(LORA_SEED)
        config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=0.0, target_modules=LORA_TARGETS,
                            init_lora_weights=False, use_rslora=rslora)
        model = get_peft_model(model, config)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.mul_(LORA_B_SCALE)
    model = model.to(dtype)
    model.train()
    trainable = {}
    for name, p in model.named_parameters():
        if method == "lora":
            train = "lora_" in name
        elif method == "attention":
            train = (name.startswith("model.language_model.layers.") and ".self_attn." in name
                     and name.endswith("_proj.weight"))
        elif method == "full":
            train = True
        else:
            raise ValueError(method)
        p.requires_grad_(train)
        if train:
            trainable[hub_name(name)] = p
    if method == "full":
        base = model
        assert base.config.tie_word_embeddings, "output head is not tied"
        assert base.lm_head.weight is base.model.language_model.embed_tokens.weight, "output head is not tied"
        assert "language_model.model.embed_tokens.weight" in trainable and not any("lm_head" in k for k in trainable)
    return model, trainable


def batch_tensors(batch):
    out = {}
    for i, ex in enumerate(batch):
        for k, v in ex.items():
            out[f"example.{i}.{k}"] = v.float() if v.is_floating_point() else v.long()
    return out


def metadata(key, method, rslora, names, extra):
    meta = {"generator": GENERATOR, "model": MODELS[key]["folder"], "method": method,
            "loss": "tokens (loss.tokens; grad.* are its gradients)", "loss_tokens": LOSS_TOKENS,
            "loss_examples": LOSS_EXAMPLES, "newline_id": str(NEWLINE), "bos_id": str(BOS), "eos_id": str(EOS),
            "mode": "train() (bit-identical to eval(): all dropout 0), float32, attn_implementation=eager, "
                    "one batch-of-1 forward per example with token_type_ids (prefix-LM mask)",
            "names": "hub (transformers 4.x) spelling; PEFT keys without base_model.model.",
            "image_token_id": str(IMAGE_ID[key]),
            "attention_mask": MASK[key],
            "versions": json.dumps(VERSIONS, sort_keys=True)}
    if method == "lora":
        scaling = LORA_ALPHA / math.sqrt(LORA_R) if rslora else LORA_ALPHA / LORA_R
        meta.update({"r": str(LORA_R), "alpha": str(LORA_ALPHA), "rslora": "true" if rslora else "false",
                     "scaling": repr(scaling), "lora_dropout": "0.0", "target_modules": ",".join(LORA_TARGETS),
                     "lora_init": f"PEFT init_lora_weights=False after torch.manual_seed({LORA_SEED}): A and B get "
                                  f"nn.Linear's default kaiming-uniform init, then B is multiplied by {LORA_B_SCALE} "
                                  "(both non-zero); the values are in init.*"})
    elif method == "attention":
        meta["trainable"] = "decoder self_attn q_proj, k_proj, v_proj, o_proj weights (big_vision colab recipe)"
    else:
        meta["trainable"] = "every parameter; the output head is tied to embed_tokens (one tensor, both uses summed)"
        meta["init"] = "omitted: every tensor starts at the checkpoint's own value"
    zero = [n for n in names if n.endswith(EXACT_ZERO) and "vision_tower" in n]
    meta["grad_zero_in_exact_arithmetic"] = ",".join(zero)
    meta.update(extra)
    return meta


def save(fname, tensors, meta):
    tensors = {k: v.detach().contiguous() for k, v in tensors.items()}
    path = os.path.join(OUT, fname)
    # safetensors writes the metadata in no fixed order: leave an existing file alone when it already
    # holds exactly these tensors and metadata, so that re-running changes no bytes.
    if os.path.exists(path):
        with safe_open(path, "pt") as old:
            same = old.metadata() == meta and set(old.keys()) == set(tensors) and all(
                torch.equal(old.get_tensor(k), v) and old.get_tensor(k).dtype == v.dtype for k, v in tensors.items())
        if same:
            print(f"  {fname}: unchanged, {len(tensors)} tensors, {os.path.getsize(path)} bytes")
            return
    save_file(tensors, path, metadata=meta)
    print(f"  wrote {fname}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")


def grads_of(model, trainable, loss):
    model.zero_grad(set_to_none=True)
    loss.backward(retain_graph=True)
    out = {}
    for name, p in trainable.items():
        out[name] = p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p)
    return out


def report_grads(label, grads):
    bad = []
    for name, g in grads.items():
        if not torch.isfinite(g).all():
            raise SystemExit(f"{label}: non-finite gradient in {name}")
        if (g == 0).all():
            bad.append(name)
    zero_elems = sum(int((g == 0).sum()) for g in grads.values())
    total = sum(g.numel() for g in grads.values())
    print(f"  {label}: {len(grads)} gradient tensors, all finite; all-zero tensors: {bad or 'none'}; "
          f"zero elements {zero_elems}/{total}")
    if bad:
        raise SystemExit(f"{label}: all-zero gradients in {bad}")
    return zero_elems


def check_tied_sum(key, batch):
    """The tied embedding's gradient is the sum of the input lookup's and the output head's: untie a
    copy and compare."""
    model, trainable = build(key, "full")
    tokens, _ = losses(model, batch)
    tied = grads_of(model, trainable, tokens)["language_model.model.embed_tokens.weight"]
    model, _ = build(key, "full")
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    embed = model.model.language_model.embed_tokens.weight
    assert model.lm_head.weight is not embed
    model.zero_grad(set_to_none=True)
    losses(model, batch)[0].backward()
    both = embed.grad + model.lm_head.weight.grad
    diff = (both - tied).abs().max().item() / tied.abs().max().item()
    share = embed.grad.abs().max().item() / model.lm_head.weight.grad.abs().max().item()
    assert diff < 1e-6, diff
    print(f"  {key}: tied embedding gradient = lookup + head (untied copy agrees to {diff:.1e} of the max; "
          f"lookup part max / head part max = {share:.2f})")


def check_train_equals_eval(key, batch):
    """train() must change nothing: same losses and gradients, bit for bit."""
    results = []
    for mode in ("train", "eval"):
        model, trainable = build(key, "full")
        getattr(model, mode)()
        tokens, _ = losses(model, batch)
        results.append((tokens.detach(), grads_of(model, trainable, tokens)))
    assert torch.equal(results[0][0], results[1][0]), "train() changes the loss"
    for name in results[0][1]:
        assert torch.equal(results[0][1][name], results[1][1][name]), f"train() changes the gradient of {name}"


def compare_f64(label, key, method, rslora, batch, grads32, loss32):
    model, trainable = build(key, method, rslora, dtype=torch.float64)
    tokens, examples = losses(model, batch)
    grads = grads_of(model, trainable, tokens)
    exact_zero = [n for n in grads if n.endswith(EXACT_ZERO) and "vision_tower" in n]
    worst = max(((grads32[n].double() - g).abs().max().item() / g.abs().max().item(), n)
                for n, g in grads.items() if n not in exact_zero)
    rel = abs(loss32 - tokens.item()) / abs(tokens.item())
    print(f"  {label} float32 vs float64: loss rel {rel:.2e}; worst gradient (max |diff| / max |g|) "
          f"{worst[0]:.2e} in {worst[1]}")
    for n in exact_zero:
        print(f"  {label}: {n} is zero in exact arithmetic: float32 max |g| {grads32[n].abs().max().item():.1e}, "
              f"float64 {grads[n].abs().max().item():.1e}")


def gradient_case(key, method, rslora, batch, check_f64, suffix=""):
    label = f"{key}-{method}" + ("-rslora" if rslora else "") + suffix
    model, trainable = build(key, method, rslora)
    init = {n: p.detach().clone() for n, p in trainable.items()}
    tokens, examples = losses(model, batch)
    grads = grads_of(model, trainable, tokens)
    report_grads(label, grads)
    tensors = batch_tensors(batch)
    tensors["loss.tokens"] = tokens.detach().reshape(1)
    tensors["loss.examples"] = examples.detach().reshape(1)
    for n in trainable:
        if method != "full":
            tensors["init." + n] = init[n]
        tensors["grad." + n] = grads[n]
    if method == "lora":
        grads_ex = grads_of(model, trainable, examples)
        report_grads(label + " (loss.examples)", grads_ex)
        for n in trainable:
            tensors["grad_examples." + n] = grads_ex[n]
    n_values = sum(p.numel() for p in trainable.values())
    print(f"  {label}: loss.tokens {tokens.item():.7f}, loss.examples {examples.item():.7f}, "
          f"{len(trainable)} trainable tensors, {n_values} values")
    extra = {"trainable_values": str(n_values)}
    if suffix == "-images":
        extra["images_per_example"] = ",".join(str(len(ex["pixel_values"])) for ex in batch)
    save(label + ".safetensors", tensors, metadata(key, method, rslora, list(trainable), extra))
    if check_f64:
        compare_f64(label, key, method, rslora, batch, grads, tokens.item())
    return tokens.item(), examples.item()


def run_trajectory(key, method, optimizer, batch, dtype=torch.float32):
    model, trainable = build(key, method, dtype=dtype)
    params = list(trainable.values())
    init = {n: p.detach().clone() for n, p in trainable.items()}
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=SGD["lr"], momentum=0.0, weight_decay=0.0, foreach=False)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0)
    else:
        opt = torch.optim.AdamW(params, lr=ADAMW["lr"], betas=ADAMW["betas"], eps=ADAMW["eps"],
                                weight_decay=ADAMW["weight_decay"], foreach=False)
        sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=ADAMW["warmup"], num_training_steps=STEPS)
    step_loss, step_lr, step_norm = [], [], []
    for _ in range(STEPS):
        opt.zero_grad(set_to_none=True)
        tokens, _ = losses(model, batch)
        tokens.backward()
        if optimizer == "sgd":
            norm = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0, foreach=False)
        else:
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm=ADAMW["clip"], norm_type=2.0, foreach=False)
        step_loss.append(tokens.item())
        step_lr.append(opt.param_groups[0]["lr"])
        step_norm.append(norm.item())
        opt.step()
        sched.step()
    final = {n: p.detach().clone() for n, p in trainable.items()}
    return init, final, step_loss, step_lr, step_norm


def trajectory_case(key, method, optimizer, batch, check_f64):
    label = f"{key}-{method}-{optimizer}"
    init, final, step_loss, step_lr, step_norm = run_trajectory(key, method, optimizer, batch)
    tensors = batch_tensors(batch)
    tensors["step.loss"] = torch.tensor(step_loss, dtype=torch.float32)
    tensors["step.lr"] = torch.tensor(step_lr, dtype=torch.float32)
    tensors["step.grad_norm"] = torch.tensor(step_norm, dtype=torch.float32)
    for n in init:
        tensors["init." + n] = init[n]
        tensors["final." + n] = final[n]
    if optimizer == "sgd":
        extra = {"optimizer": "sgd", "lr": repr(SGD["lr"]), "schedule": "constant", "clip_norm": "0 (none)",
                 "update_rule": SGD_RULE}
    else:
        extra = {"optimizer": "adamw", "lr": repr(ADAMW["lr"]), "betas": "0.9,0.999", "eps": "1e-08",
                 "weight_decay": repr(ADAMW["weight_decay"]), "clip_norm": repr(ADAMW["clip"]),
                 "clip_rule": CLIP_RULE, "schedule": "cosine, 2 warmup steps, 10 steps", "schedule_formula": COSINE,
                 "update_rule": ADAMW_RULE}
    extra.update({"steps": str(STEPS), "batch": "the 3 examples, every step",
                  "step_loss": "loss.tokens computed before that step's update",
                  "step_grad_norm": "global L2 norm of the gradients before clipping",
                  "trainable_values": str(sum(v.numel() for v in init.values()))})
    print(f"  {label}: loss {' '.join(f'{l:.5f}' for l in step_loss)}")
    print(f"  {label}: lr {' '.join(f'{l:.5g}' for l in step_lr)}")
    print(f"  {label}: grad_norm {' '.join(f'{l:.4f}' for l in step_norm)}")
    drift = max((final[n] - init[n]).abs().max().item() for n in init)
    print(f"  {label}: largest change of a weight over the run {drift:.3e}")
    if not step_loss[-1] < step_loss[0]:
        raise SystemExit(f"{label}: the loss did not go down")
    rises = [k for k in range(1, STEPS) if step_loss[k] > step_loss[k - 1]]
    print(f"  {label}: the loss never rises" if not rises else f"  {label}: the loss rises at steps {rises}")
    save(label + ".safetensors", tensors, metadata(key, method, False, list(init), extra))
    if check_f64:
        _, final64, loss64, _, _ = run_trajectory(key, method, optimizer, batch, dtype=torch.float64)
        worst_loss = max(abs(a - b) / abs(b) for a, b in zip(step_loss, loss64))
        worst_w = max((final[n].double() - final64[n]).abs().max().item() for n in final)
        print(f"  {label} float32 vs float64: worst step loss rel {worst_loss:.2e}, worst final weight abs {worst_w:.2e}")
    return step_loss


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--check-f64", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    os.makedirs(OUT, exist_ok=True)
    summary = {}
    for key in MODELS:
        base = load_base(key)
        batch = make_batch(key, base.config)
        own, manual = check_manual_loss(base.train(), batch)
        print(f"{key}: lengths {[len(ex['input_ids']) for ex in batch]}, supervised "
              f"{[int((ex['labels'] != -100).sum()) for ex in batch]}; model loss {own:.7f} == manual {manual:.7f}")
        check_train_equals_eval(key, batch)
        print(f"  {key}: train() and eval() give bit-identical losses and gradients")
        cases = [("lora", False), ("attention", False), ("full", False)]
        if key == "pg1":
            cases.insert(1, ("lora", True))
        for method, rslora in cases:
            summary[f"{key}-{method}" + ("-rslora" if rslora else "")] = gradient_case(key, method, rslora, batch, args.check_f64)
        check_tied_sum(key, batch)
        multi = make_batch(key, base.config, images=IMAGES_PER_EXAMPLE)
        summary[f"{key}-full-images"] = gradient_case(key, "full", False, multi, args.check_f64, suffix="-images")
        trajectories = {"pg1": ["lora"], "pg2": ["attention"]}[key]
        for method in trajectories:
            for optimizer in ("sgd", "adamw"):
                summary[f"{key}-{method}-{optimizer}"] = trajectory_case(key, method, optimizer, batch, args.check_f64)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
