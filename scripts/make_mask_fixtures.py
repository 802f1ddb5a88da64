#!/usr/bin/env python3
"""Builds the fixtures for the mask decoder, mask placement and .npz reader tests
(Tests/PaliGemmaTests/{MaskDecoderTests,NPZTests}.swift) under
Tests/PaliGemmaTests/Fixtures/masks/.

Run by hand, not by CI:
    python3 -m venv /tmp/ref
    /tmp/ref/bin/pip install "torch==2.13.0+cpu" "numpy==2.4.6" "pillow==13.0.0"
    /tmp/ref/bin/pip install --target /tmp/pycoco "pycocotools==2.0.8"   # optional: RLE reference
    /tmp/ref/bin/python scripts/make_mask_fixtures.py

Pinned: torch 2.13.0+cpu, numpy 2.4.6, pillow 13.0.0, pycocotools 2.0.8. Seeds are fixed.

Files:
  vae-random.npz   A PyTorch VQ-VAE decoder with random weights, saved like big_vision's
                   vae-oid.npz: PyTorch layouts, the real key names (`_vq_vae._embedding`,
                   `decoder.{0,2.net.{0,2,4},3.net.{0,2,4},4,6,8,10,12}.{weight,bias}`) plus one
                   unused encoder key. Written with np.savez_compressed (deflated, ZIP64). To keep
                   it small the weights sit on a coarse grid (k/4 * 2^e, exact in float16) and are
                   stored as a mix of float32/float16 and C/Fortran order, so the decoder test also
                   covers every reader path.
  decoder_ref.npz  codes [N,16] (as float32) and mask64 [N,64,64]: the PyTorch decoder's output.
  placement.json   Mask placement cases, mirroring big_vision's segmentation evaluator
                   (big_vision/evaluators/proj/paligemma/transfers/segmentation.py): box = loc/1023,
                   pixel box = int(v * size) (truncation), PIL BILINEAR resize of the float32 64x64
                   mask to (x2-x1, y2-y1), threshold > 0, pasted at [y1:y2, x1:x2]; an empty pixel box
                   gives an empty mask. Each case: mask index, image size, locs, pixel box, area, the
                   COCO compressed RLE string (pycocotools) of the full mask.
  placement.npz    full_i [H,W] (0/1 float32) and, for small boxes, resized_i [h,w] (PIL's float
                   output before the threshold).
  arrays.npz       Small arrays covering the reader: stored and deflated members, float32/float16,
                   big-endian, Fortran order, .npy versions 1/2/3, a scalar, an empty array, and
                   unsupported dtypes (int64, float64) that must be rejected.
  savez_stored.npz np.savez output (stored members, ZIP64 local headers).
"""
import io
import json
import os
import sys
import zipfile

import numpy as np
import PIL
import torch
from numpy.lib import format as npformat
from PIL import Image
from torch import nn

EXPECTED = {"torch": "2.13.0+cpu", "numpy": "2.4.6", "pillow": "13.0.0"}
for mod, have in (("torch", torch.__version__), ("numpy", np.__version__), ("pillow", PIL.__version__)):
    if have != EXPECTED[mod]:
        print(f"warning: {mod} {have} differs from the pinned {EXPECTED[mod]}", file=sys.stderr)

sys.path.append("/tmp/pycoco")
try:
    from pycocotools import mask as coco_mask
except ImportError:
    coco_mask = None
    print("warning: pycocotools not found; RLE strings will be missing", file=sys.stderr)

OUT = os.path.join(os.path.dirname(__file__), "..", "Tests", "PaliGemmaTests", "Fixtures", "masks")
os.makedirs(OUT, exist_ok=True)


class ResBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1),
                                 nn.ReLU(), nn.Conv2d(c, c, 1))

    def forward(self, x):
        return x + self.net(x)


class Quantizer(nn.Module):
    def __init__(self):
        super().__init__()
        self._embedding = nn.Parameter(torch.zeros(128, 512))


class MaskVAEDecoder(nn.Module):
    """The decoder half of big_vision's mask VQ-VAE, with the checkpoint's module names."""

    def __init__(self):
        super().__init__()
        self._vq_vae = Quantizer()
        layers = [nn.Conv2d(512, 128, 1), nn.ReLU(), ResBlock(128), ResBlock(128)]
        for cin, cout in ((128, 128), (128, 64), (64, 32), (32, 16)):
            layers += [nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1), nn.ReLU()]
        layers.append(nn.Conv2d(16, 1, 1))
        self.decoder = nn.Sequential(*layers)

    def forward(self, codes):  # codes [N, 16] -> [N, 64, 64]
        x = self._vq_vae._embedding[codes]  # [N, 16, 512]
        x = x.reshape(-1, 4, 4, 512).permute(0, 3, 1, 2)  # NCHW, row-major 4x4 grid
        return self.decoder(x)[:, 0]


def grid_weights(shape, fan_in, rng, gain=2.0):
    """Random weights on a coarse grid: k/4 * 2^e with k in -4..4 (exact in float16)."""
    target = np.sqrt(gain / fan_in) / 0.65
    scale = 2.0 ** np.round(np.log2(target))
    return (rng.integers(-4, 5, size=shape) / 4 * scale).astype(np.float32)


def build_decoder():
    rng = np.random.default_rng(0)
    model = MaskVAEDecoder()
    state = {}
    for name, p in model.state_dict().items():
        if name == "_vq_vae._embedding":
            w = (rng.integers(-4, 5, size=p.shape) / 4).astype(np.float32)
        elif name.endswith(".weight"):
            transposed = name.split(".")[1] in ("4", "6", "8", "10")  # ConvTranspose: (in, out, kh, kw)
            # Inputs feeding one output: all for a conv; a quarter of the taps for stride 2 transposed.
            fan_in = int(np.prod(p.shape)) // p.shape[1] // 4 if transposed else int(np.prod(p.shape)) // p.shape[0]
            w = grid_weights(p.shape, fan_in, rng, gain=1.0 if ".net." in name else 2.0)
        else:
            w = (rng.integers(-4, 5, size=p.shape) / 64).astype(np.float32)
        state[name] = w
    state["decoder.12.weight"] /= 8  # output in about [-1, 1], like the real decoder's
    state["decoder.12.bias"] = np.array([0.03125], np.float32)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    return model, state


def save_checkpoint(state):
    # Mixed dtypes and memory orders, as a stress test of the reader.
    half = {"decoder.0.weight", "decoder.2.net.0.weight", "decoder.2.net.2.weight", "decoder.3.net.2.weight",
            "decoder.4.weight", "decoder.6.weight", "decoder.10.weight"}
    fortran = {"decoder.3.net.0.weight", "decoder.4.weight", "decoder.12.weight", "_vq_vae._embedding"}
    arrays = {}
    for name, w in state.items():
        a = w.astype(np.float16) if name in half else w
        assert np.array_equal(a.astype(np.float32), w), name
        arrays[name] = np.asfortranarray(a) if name in fortran else a
    arrays["encoder.0.weight"] = np.ones((8, 1, 3, 3), np.float32)  # present in the real file, unused
    np.savez_compressed(os.path.join(OUT, "vae-random.npz"), **arrays)


def place(m64, locs, width, height):
    """big_vision's evaluator placement: /1023, int() truncation, PIL bilinear, > 0."""
    y1, x1, y2, x2 = [v / 1023 for v in locs]
    y1, x1, y2, x2 = map(int, (y1 * height, x1 * width, y2 * height, x2 * width))
    full = np.zeros((height, width), bool)
    resized = None
    if x2 > x1 and y2 > y1:
        resized = np.asarray(Image.fromarray(m64).resize([x2 - x1, y2 - y1], resample=Image.BILINEAR))
        full[y1:y2, x1:x2] = resized > 0.0
    return (x1, y1, x2, y2), full, resized


def main():
    torch.manual_seed(0)
    model, state = build_decoder()
    save_checkpoint(state)

    rng = np.random.default_rng(1)
    codes = np.stack([
        rng.integers(0, 128, 16), rng.integers(0, 128, 16), np.zeros(16, np.int64), np.full(16, 127),
        np.arange(16) * 8, rng.integers(0, 128, 16),
    ])
    with torch.no_grad():
        m64 = model(torch.from_numpy(codes)).numpy().astype(np.float32)
    for i, m in enumerate(m64):
        print(f"mask {i}: min {m.min():.3f} max {m.max():.3f} positive {(m > 0).mean():.2f}")
    np.savez_compressed(os.path.join(OUT, "decoder_ref.npz"), codes=codes.astype(np.float32), mask64=m64)

    cases = [  # (mask index, width, height, [y_min, x_min, y_max, x_max] loc codes)
        (0, 640, 480, [100, 200, 900, 800]),   # upscale, both axes
        (1, 97, 61, [0, 0, 1023, 1023]),       # whole image, small
        (2, 300, 1000, [512, 100, 700, 400]),  # tall image
        (3, 200, 150, [300, 300, 500, 420]),   # downscale below 64 on both axes (antialiasing)
        (4, 1023, 1023, [10, 20, 1000, 90]),   # wide-range mix: downscale x, upscale y
        (5, 10, 3, [400, 400, 600, 600]),      # pixel box collapses after int(): empty mask
        (0, 1, 1, [0, 0, 1023, 1023]),         # 1x1 image
        (5, 333, 257, [1, 2, 1022, 1021]),
    ]
    meta, arrays = [], {}
    for i, (mi, w, h, locs) in enumerate(cases):
        box, full, resized = place(m64[mi], locs, w, h)
        entry = {"mask": mi, "width": w, "height": h, "locs": locs, "pixel_box": list(box),
                 "area": int(full.sum())}
        if coco_mask is not None:
            rle = coco_mask.encode(np.asfortranarray(full.astype(np.uint8)))
            entry["coco_counts"] = rle["counts"].decode("ascii")
            assert int(coco_mask.area(rle)) == entry["area"]
        meta.append(entry)
        arrays[f"full_{i}"] = full.astype(np.float32)
        if resized is not None and resized.size <= 20000:
            arrays[f"resized_{i}"] = resized.astype(np.float32)
            near = np.abs(resized).min()
            print(f"case {i}: box {box}, area {entry['area']}, smallest |resized| {near:.2e}")
        else:
            print(f"case {i}: box {box}, area {entry['area']}")
    np.savez_compressed(os.path.join(OUT, "placement.npz"), **arrays)
    with open(os.path.join(OUT, "placement.json"), "w") as f:
        json.dump(meta, f, indent=1)

    write_reader_fixtures()


def npy_bytes(a, version=None):
    buf = io.BytesIO()
    npformat.write_array(buf, a, version=version, allow_pickle=False)
    return buf.getvalue()


def write_reader_fixtures():
    base = (np.arange(24, dtype=np.float32).reshape(2, 3, 4) * 0.5 - 3)
    members = [  # (name, bytes, compression)
        ("c_order", npy_bytes(base), zipfile.ZIP_STORED),
        ("fortran", npy_bytes(np.asfortranarray(base)), zipfile.ZIP_DEFLATED),
        ("half", npy_bytes(np.arange(5, dtype=np.float16) * np.float16(0.25)), zipfile.ZIP_DEFLATED),
        ("big_endian", npy_bytes(base[0].T.copy().astype(">f4")), zipfile.ZIP_STORED),
        ("half_fortran_be", npy_bytes(np.asfortranarray(base[1].astype(">f2"))), zipfile.ZIP_DEFLATED),
        ("scalar", npy_bytes(np.array(2.5, np.float32)), zipfile.ZIP_STORED),
        ("empty", npy_bytes(np.zeros((0, 3), np.float32)), zipfile.ZIP_STORED),
        ("v2", npy_bytes(base, version=(2, 0)), zipfile.ZIP_DEFLATED),
        ("v3", npy_bytes(base, version=(3, 0)), zipfile.ZIP_STORED),
        ("int64", npy_bytes(np.arange(3, dtype=np.int64)), zipfile.ZIP_STORED),
        ("float64", npy_bytes(np.arange(3, dtype=np.float64)), zipfile.ZIP_DEFLATED),
    ]
    with zipfile.ZipFile(os.path.join(OUT, "arrays.npz"), "w") as z:
        for name, data, method in members + [("readme.txt", b"not an array", zipfile.ZIP_STORED)]:
            info = zipfile.ZipInfo(name if name.endswith(".txt") else name + ".npy", date_time=(2024, 1, 1, 0, 0, 0))
            info.compress_type = method  # fixed timestamps keep the file reproducible
            z.writestr(info, data)
    np.savez(os.path.join(OUT, "savez_stored.npz"), a=base, b=np.float32([1, 2, 3]))


if __name__ == "__main__":
    main()
