#!/usr/bin/env python3
"""Writes Tests/PaliGemmaImageTests/Fixtures: image files in every supported variant and
what Pillow + transformers make of them (decoded RGB, resized uint8, pixel tensors).

Run by hand (the output is committed):

    /tmp/ref/bin/python scripts/make_image_fixtures.py

Pinned reference versions (checked at start):
    pillow 13.0.0 (bundles libjpeg-turbo 3.2.0), transformers 5.24.0, numpy 2.4.6,
    torch 2.13.0+cpu (only for measuring the torchvision-style "fast" resize)
A C compiler and the system libjpeg (libjpeg62-turbo-dev) build scripts/jpeg_variants.c
for the JPEG variants Pillow cannot write (restart markers, YCCK, Adobe RGB).

Expected values come from Pillow/transformers except for the few cases marked
"rule" in the manifest (16-bit grayscale, 16-bit tRNS colours, 16-bit PGM), where this
package deliberately does not copy a Pillow quirk; there the expected value follows the
documented rule and the manifest records how far Pillow's output is from it.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import PIL
from PIL import Image, ImageOps, features

PINNED = {"pillow": "13.0.0", "transformers": "5.24.0", "numpy": "2.4.6"}

import transformers  # noqa: E402
from transformers.image_transforms import convert_to_rgb  # noqa: E402
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "Tests" / "PaliGemmaImageTests" / "Fixtures"
SEED = 20240611


def check_versions():
    found = {"pillow": PIL.__version__, "transformers": transformers.__version__, "numpy": np.__version__}
    for name, want in PINNED.items():
        if found[name] != want:
            sys.exit(f"{name} {found[name]} found, fixtures are pinned to {want}")


# ------------------------------------------------------------------ content


def photo(w, h, seed):
    """Photo-like RGB content: gradients, soft blobs, noise and a few hard edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    img[..., 0] = 255 * x / max(w - 1, 1)
    img[..., 1] = 255 * y / max(h - 1, 1)
    img[..., 2] = 128 + 100 * np.sin(x / 7.0) * np.cos(y / 5.0)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, max(w, h) / 2 + 3)
        blob = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))
        img += blob[..., None] * rng.uniform(-120, 120, 3)
    img[(x // 9 + y // 9) % 5 == 0] = [250, 20, 20]  # hard edges
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def pattern(w, h):
    """Integer pattern reproduced exactly by the Swift tests (TestPattern.swift)."""
    x = np.arange(w, dtype=np.int64)[None, :]
    y = np.arange(h, dtype=np.int64)[:, None]
    r = ((x ^ y) * 3 + (x * x) // 7 + y) & 255
    g = ((x * 5 + y * 3) ^ ((x * y) >> 4)) & 255
    b = ((x // 8 + y // 8) % 2) * 255 + 0 * x
    return np.stack(np.broadcast_arrays(r, g, b), axis=-1).astype(np.uint8)


def alpha_ramp(w, h):
    y, x = np.mgrid[0:h, 0:w]
    a = (x * 255 // max(w - 1, 1)).astype(np.int64)
    a[: h // 4] = 0  # fully transparent band
    a[-(h // 4):] = 255  # fully opaque band
    return a.astype(np.uint8)


# ------------------------------------------------------------------ PNG writer
# Pillow cannot write 2/4-bit gray, 16-bit colour, gray+alpha 16 or interlaced PNGs.

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _pack_row(row, depth):
    flat = row.reshape(-1).astype(np.int64)
    if depth == 16:
        return flat.astype(">u2").tobytes()
    if depth == 8:
        return flat.astype(np.uint8).tobytes()
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(flat), per):
        byte = 0
        for j, v in enumerate(flat[i:i + per]):
            byte |= int(v) << (8 - depth * (j + 1))
        out.append(byte)
    return bytes(out)


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return a if pa <= pb and pa <= pc else (b if pb <= pc else c)


def _filter(rows, bpp):
    """Cycles through all five filter types so every unfilter path is exercised."""
    out, prev = bytearray(), bytes(len(rows[0])) if rows else b""
    for n, raw in enumerate(rows):
        kind = n % 5
        line = bytearray([kind])
        for i, v in enumerate(raw):
            a = raw[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            pred = [0, a, b, (a + b) // 2, _paeth(a, b, c)][kind]
            line.append((v - pred) & 255)
        out += line
        prev = raw
    return bytes(out)


def write_png(path, samples, depth, color_type, palette=None, trns=None, interlace=False, exif=None):
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples[..., None]
    h, w, channels = samples.shape
    bpp = max(1, channels * depth // 8)
    data = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        sub = samples[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        data += _filter([_pack_row(r, depth) for r in sub], bpp)
    png = b"\x89PNG\r\n\x1a\n"
    png += _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace)))
    if exif is not None:
        png += _chunk(b"eXIf", exif)
    if palette is not None:
        png += _chunk(b"PLTE", bytes(np.asarray(palette, dtype=np.uint8).reshape(-1)))
    if trns is not None:
        png += _chunk(b"tRNS", trns)
    png += _chunk(b"IDAT", zlib.compress(data, 9))
    png += _chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def exif_orientation(value, little=True):
    """A minimal TIFF block with IFD0 holding only the Orientation tag."""
    e = "<" if little else ">"
    head = (b"II" if little else b"MM") + struct.pack(e + "HI", 42, 8)
    ifd = struct.pack(e + "H", 1) + struct.pack(e + "HHIHH", 0x0112, 3, 1, value, 0) + struct.pack(e + "I", 0)
    return head + ifd


# ------------------------------------------------------------------ helpers


class Writer:
    def __init__(self):
        self.manifest = {"versions": {}, "decode": [], "orientation": [], "resize": [], "tensor": []}
        self.rng = np.random.default_rng(SEED)

    def path(self, rel):
        p = OUT / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        return p

    def store_rgb(self, rel_base, rgb):
        """Small expected images as raw RGB bytes, bigger ones as PNG (lossless)."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        if rgb.shape[0] * rgb.shape[1] <= 64 * 64:
            rel = rel_base + ".rgb"
            self.path(rel).write_bytes(rgb.tobytes())
        else:
            rel = rel_base + ".png"
            Image.fromarray(rgb, "RGB").save(self.path(rel), optimize=True)
        return rel

    def samples(self, rgb, count=96):
        h, w = rgb.shape[:2]
        pts = [(0, 0), (w - 1, h - 1), (w // 2, h // 2)]
        xs = self.rng.integers(0, w, count)
        ys = self.rng.integers(0, h, count)
        pts += list(zip(xs.tolist(), ys.tolist()))
        return [[int(x), int(y), *[int(v) for v in rgb[y, x]]] for x, y in pts]


def reference_rgb(path):
    """What transformers' PIL backend feeds the resize: convert_to_rgb on Image.open."""
    with Image.open(path) as im:
        return np.array(convert_to_rgb(im, return_numpy=True))


def crc(array):
    return zlib.crc32(np.ascontiguousarray(array).tobytes()) & 0xFFFFFFFF


# ------------------------------------------------------------------ decode corpus


def jpeg_helper():
    exe = Path(tempfile.mkdtemp()) / "jpeg_variants"
    subprocess.run(["cc", "-O2", "-o", str(exe), str(ROOT / "scripts" / "jpeg_variants.c"), "-ljpeg"], check=True)
    return exe


def make_decode(wr):
    base = photo(61, 47, 1)
    gray = (base.astype(np.int64) @ [77, 150, 29] >> 8).astype(np.uint8)
    alpha = alpha_ramp(61, 47)
    cases = []  # (name, relative file, note, rule-expected or None)

    def add(name, rel, note, rule=None):
        cases.append((name, rel, note, rule))

    # JPEG written by Pillow
    def pil_jpeg(name, img, **kw):
        rel = f"decode/{name}.jpg"
        img.save(wr.path(rel), "JPEG", **kw)
        add(name, rel, f"Pillow JPEG {kw}")

    rgb_im = Image.fromarray(base)
    pil_jpeg("jpeg_420", rgb_im, quality=90)
    pil_jpeg("jpeg_444", rgb_im, quality=90, subsampling=0)
    pil_jpeg("jpeg_422", rgb_im, quality=75, subsampling=1)
    pil_jpeg("jpeg_progressive", rgb_im, quality=85, progressive=True)
    pil_jpeg("jpeg_optimized", rgb_im, quality=60, optimize=True)
    pil_jpeg("jpeg_gray", Image.fromarray(gray), quality=90)
    cmyk = Image.fromarray(base).convert("CMYK")
    pil_jpeg("jpeg_cmyk", cmyk, quality=90)
    pil_jpeg("jpeg_1x1", Image.fromarray(photo(1, 1, 2)), quality=90)
    pil_jpeg("jpeg_3x5", Image.fromarray(photo(3, 5, 3)), quality=90)
    pil_jpeg("jpeg_tall", Image.fromarray(photo(9, 300, 4)), quality=90)
    pil_jpeg("jpeg_wide", Image.fromarray(photo(400, 7, 5)), quality=90)
    pil_jpeg("jpeg_photo", Image.fromarray(photo(512, 384, 6)), quality=85)

    # JPEG variants from the libjpeg helper
    exe = jpeg_helper()
    for mode, arr in [("restart-rgb", base), ("restart-gray", gray), ("restart-progressive", base),
                      ("ycck", np.array(cmyk)), ("adobe-rgb", base)]:
        name = "jpeg_" + mode.replace("-", "_")
        raw = wr.path(f"tmp/{name}.raw")
        raw.write_bytes(np.ascontiguousarray(arr).tobytes())
        rel = f"decode/{name}.jpg"
        subprocess.run([str(exe), mode, str(arr.shape[1]), str(arr.shape[0]), str(raw), str(wr.path(rel))], check=True)
        add(name, rel, f"libjpeg {mode}")

    # PNG written by Pillow
    def pil_png(name, img, **kw):
        rel = f"decode/{name}.png"
        img.save(wr.path(rel), "PNG", **kw)
        add(name, rel, f"Pillow PNG mode {img.mode} {kw}")

    pil_png("png_rgb8", rgb_im)
    pil_png("png_rgba8", Image.fromarray(np.dstack([base, alpha]), "RGBA"))
    pil_png("png_gray8", Image.fromarray(gray))
    pil_png("png_la8", Image.fromarray(np.dstack([gray, alpha]), "LA"))
    pil_png("png_1bit", Image.fromarray(gray).convert("1"))
    pal = rgb_im.quantize(colors=200, method=Image.Quantize.MEDIANCUT)
    pil_png("png_p8", pal)
    pil_png("png_p4", rgb_im.quantize(colors=16, method=Image.Quantize.MEDIANCUT), bits=4)
    pil_png("png_p2", rgb_im.quantize(colors=4, method=Image.Quantize.MEDIANCUT), bits=2)
    pil_png("png_p1", rgb_im.quantize(colors=2, method=Image.Quantize.MEDIANCUT), bits=1)
    pil_png("png_p8_trns_bytes", pal, transparency=bytes((i * 37) % 256 for i in range(120)))
    pil_png("png_p8_trns_index", pal, transparency=5)
    g8 = Image.fromarray(gray)
    pil_png("png_gray8_trns", g8, transparency=int(gray[10, 10]))
    pil_png("png_rgb8_trns", rgb_im, transparency=tuple(int(v) for v in base[3, 4]))
    pil_png("png_1x1", Image.fromarray(photo(1, 1, 7)))
    pil_png("png_wide", Image.fromarray(photo(500, 2, 8)))

    # PNG from the writer above
    def own_png(name, samples, depth, ctype, rule=None, **kw):
        rel = f"decode/{name}.png"
        write_png(wr.path(rel), samples, depth, ctype, **kw)
        add(name, rel, f"PNG depth {depth} type {ctype} {sorted(kw)}", rule)

    g2, g4 = gray >> 6, gray >> 4
    own_png("png_gray2", g2, 2, 0)
    own_png("png_gray4", g4, 4, 0)
    own_png("png_gray1_trns", gray >> 7, 1, 0, trns=struct.pack(">H", 1))
    own_png("png_gray2_trns0", g2, 2, 0, trns=struct.pack(">H", 0))
    own_png("png_gray2_trns2", g2, 2, 0, trns=struct.pack(">H", 2))
    own_png("png_gray4_trns0", g4, 4, 0, trns=struct.pack(">H", 0))
    wide16 = (base.astype(np.uint16) * 257 + np.arange(61, dtype=np.uint16)[None, :, None]) & 0xFFFF
    gray16 = (gray.astype(np.uint32) * 257 + 3 * np.arange(61)[None, :]).clip(0, 65535).astype(np.uint16)
    hi = lambda a: (a >> 8).astype(np.uint8)  # noqa: E731
    own_png("png_gray16", gray16, 16, 0, rule=np.repeat(hi(gray16)[..., None], 3, -1))
    key16 = int(gray16[5, 5])
    g16_rule = np.repeat(np.where(gray16 == key16, 255, hi(gray16))[..., None], 3, -1)
    own_png("png_gray16_trns", gray16, 16, 0, rule=g16_rule, trns=struct.pack(">H", key16))
    own_png("png_rgb16", wide16, 16, 2)
    own_png("png_rgba16", np.dstack([wide16, alpha.astype(np.uint16) * 257]), 16, 6)
    own_png("png_la16", np.dstack([gray16, alpha.astype(np.uint16) * 257 + 5]), 16, 4)
    rkey = wide16[7, 8]
    rgb16_rule = np.where((wide16 == rkey).all(-1, keepdims=True), 255, hi(wide16))
    own_png("png_rgb16_trns", wide16, 16, 2, rule=rgb16_rule, trns=struct.pack(">HHH", *[int(v) for v in rkey]))
    own_png("png_interlaced_rgb8", base, 8, 2, interlace=True)
    own_png("png_interlaced_rgba16", np.dstack([wide16, alpha.astype(np.uint16) * 257]), 16, 6, interlace=True)
    pal_arr = np.array(pal)
    pal_rgb = np.array(pal.getpalette()[: 3 * 200]).reshape(-1, 3)
    own_png("png_interlaced_p8", pal_arr, 8, 3, palette=pal_rgb, interlace=True)
    own_png("png_interlaced_gray1", gray >> 7, 1, 0, interlace=True)
    own_png("png_interlaced_gray4_small", g4[:3, :5], 4, 0, interlace=True)
    short = (np.arange(61)[None, :] + np.arange(47)[:, None]) % 16
    own_png("png_p4_short_palette", short, 4, 3, palette=pal_rgb[:10])
    own_png("png_p8_trns_short", pal_arr, 8, 3, palette=pal_rgb, trns=bytes([0, 64, 128, 255, 7]))

    # Netpbm
    def pnm(name, header, body, rule=None):
        rel = f"decode/{name}.pnm"
        wr.path(rel).write_bytes(header + body)
        add(name, rel, header.split(b"\n")[0].decode(), rule)

    h, w = gray.shape
    pnm("pnm_p6", f"P6\n{w} {h}\n255\n".encode(), base.tobytes())
    pnm("pnm_p5", f"P5 {w} {h} 255\n".encode(), gray.tobytes())
    pnm("pnm_p5_maxval100", f"P5\n# comment\n{w} {h}\n100\n".encode(), (gray.astype(int) * 100 // 255).astype(np.uint8).tobytes())
    v1000 = (base.astype(np.int64) * 1000 // 255 + 0).astype(">u2")
    pnm("pnm_p6_maxval1000", f"P6\n{w} {h}\n1000\n".encode(), v1000.tobytes())
    pgm16 = (gray.astype(np.int64) * 257).astype(">u2")
    rule16 = np.repeat(np.rint(pgm16.astype(np.float64) / 65535 * 255).astype(np.uint8)[..., None], 3, -1)
    pnm("pnm_p5_maxval65535", f"P5\n{w} {h}\n65535\n".encode(), pgm16.tobytes(), rule=rule16)
    pnm("pnm_p3", f"P3\n# plain\n{w} {h}\n255\n".encode(), "\n".join(" ".join(map(str, r.reshape(-1))) for r in base).encode() + b"\n")
    pnm("pnm_p2_maxval15", f"P2 {w} {h} 15\n".encode(), "\n".join(" ".join(map(str, r)) for r in (gray >> 4)).encode() + b"\n")
    bits = (gray > 128).astype(np.uint8)
    pnm("pnm_p1", f"P1\n{w} {h}\n".encode(), "\n".join("".join(map(str, r)) for r in bits).encode() + b"\n")
    pnm("pnm_p4", f"P4\n{w} {h}\n".encode(), b"".join(np.packbits(r).tobytes() for r in bits))

    for name, rel, note, rule in cases:
        ref = reference_rgb(wr.path(rel))
        entry = {"name": name, "file": rel, "note": note, "width": int(ref.shape[1]), "height": int(ref.shape[0])}
        if rule is not None:
            rule = np.asarray(rule, dtype=np.uint8)
            entry["source"] = "rule"
            entry["pillow_max_abs_diff"] = int(np.abs(rule.astype(int) - ref.astype(int)).max())
            ref = rule
        else:
            entry["source"] = "pillow"
        entry["expected"] = wr.store_rgb(f"decode/{name}.expected", ref)
        with Image.open(wr.path(rel)) as im:
            entry["pillow_mode"] = im.mode
            entry["pillow_has_transparency"] = "A" in im.getbands() or im.info.get("transparency") is not None
        wr.manifest["decode"].append(entry)
    for p in wr.path("tmp").glob("*"):
        p.unlink()
    wr.path("tmp").rmdir()


def make_orientation(wr):
    base = photo(40, 24, 9)
    for value in range(1, 9):
        for kind in ("jpg", "png"):
            rel = f"orientation/o{value}.{kind}"
            if kind == "jpg":
                Image.fromarray(base).save(wr.path(rel), "JPEG", quality=95, exif=b"Exif\x00\x00" + exif_orientation(value, little=value % 2 == 0))
            else:
                write_png(wr.path(rel), base, 8, 2, exif=exif_orientation(value, little=value % 2 == 1))
            with Image.open(wr.path(rel)) as im:
                plain = np.array(convert_to_rgb(im, return_numpy=True))
                assert im.getexif().get(0x0112) == value, (rel, im.getexif())
                turned = np.array(ImageOps.exif_transpose(im).convert("RGB"))
            wr.manifest["orientation"].append({
                "file": rel, "orientation": value,
                "expected_plain": wr.store_rgb(f"orientation/o{value}_{kind}.plain", plain),
                "expected_applied": wr.store_rgb(f"orientation/o{value}_{kind}.applied", turned),
                "applied_width": int(turned.shape[1]), "applied_height": int(turned.shape[0]),
            })


# ------------------------------------------------------------------ resize and tensors

PATTERN_SIZES = [(1, 1), (2, 3), (5, 7), (13, 11), (100, 80), (224, 224), (300, 17), (17, 300),
                 (1000, 3), (3, 1000), (640, 480), (1920, 1080), (4000, 3000),
                 (600, 2000), (3000, 4000)]  # tall: Pillow 13 runs the vertical pass first
FULL_224 = {(13, 11), (17, 300), (640, 480), (4000, 3000), (1000, 3), (600, 2000)}
FILTERS = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def make_resize(wr):
    photo_rgb = reference_rgb(wr.path("decode/jpeg_photo.jpg"))
    sources = [({"pattern": [w, h]}, pattern(w, h)) for w, h in PATTERN_SIZES]
    sources.append(({"file": "decode/jpeg_photo.jpg"}, photo_rgb))
    for src_desc, rgb in sources:
        im = Image.fromarray(rgb)
        w, h = im.size
        targets = [(224, 224), (448, 448), (896, 896)]
        if (w, h) in [(100, 80), (640, 480), (13, 11)]:
            targets += [(37, 53), (w // 2 or 1, h * 2)]
        for fname, resample in FILTERS.items():
            for tw, th in targets:
                out = np.array(im.resize((tw, th), resample=resample))
                entry = {"source": src_desc, "width": tw, "height": th, "filter": fname,
                         "crc32": crc(out), "samples": wr.samples(out)}
                full = (tw, th) == (224, 224) and ((w, h) in FULL_224 or "file" in src_desc)
                if full or tw * th <= 64 * 64 or (tw, th) == (37, 53):
                    tag = f"{w}x{h}_to_{tw}x{th}_{fname}"
                    entry["expected"] = wr.store_rgb(f"resize/{tag}", out)
                wr.manifest["resize"].append(entry)


def make_random_resizes(wr):
    """Random sizes in both directions, so the pass order rule is exercised widely."""
    rng = np.random.default_rng(SEED + 1)
    for _ in range(40):
        w, h, tw, th = (int(v) for v in rng.integers(1, 260, 4))
        im = Image.fromarray(pattern(w, h))
        for fname, resample in FILTERS.items():
            out = np.array(im.resize((tw, th), resample=resample))
            wr.manifest["resize"].append({"source": {"pattern": [w, h]}, "width": tw, "height": th, "filter": fname,
                                          "crc32": crc(out), "samples": wr.samples(out, 24)})


def processor(size, resample, **kw):
    return SiglipImageProcessorPil(size={"height": size, "width": size}, resample=resample, **kw)


def fast_like(rgb, size, mean=0.5, std=0.5, rescale=1 / 255):
    """The torchvision backend's arithmetic (SiglipImageProcessor, the default when
    torchvision is installed), reproduced with torch: uint8 antialiased bicubic
    interpolate, then the fused (x - mean/rescale) / (std/rescale) in float32."""
    import torch
    t = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None]
    r = torch.nn.functional.interpolate(t, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
    m = torch.tensor([mean] * 3) * (1.0 / rescale)
    s = torch.tensor([std] * 3) * (1.0 / rescale)
    x = (r[0].to(torch.float32) - m[:, None, None]) / s[:, None, None]
    return r[0].permute(1, 2, 0).numpy(), x.numpy()


def make_tensors(wr):
    srcs = [("decode/jpeg_photo.jpg", None), (None, (4000, 3000))]
    fast = []
    for rel, pat in srcs:
        if rel:
            with Image.open(wr.path(rel)) as im:
                im.load()
                pil = im.copy()
            rgb = np.array(convert_to_rgb(pil, return_numpy=True))
            desc = {"file": rel}
        else:
            rgb = pattern(*pat)
            pil = Image.fromarray(rgb)
            desc = {"pattern": list(pat)}
        for size in (224, 448, 896):
            for fname, resample in FILTERS.items():
                if fname == "bilinear" and size != 224:
                    continue
                pv = processor(size, resample)(pil, return_tensors="np")["pixel_values"][0]
                assert pv.dtype == np.float32 and pv.shape == (3, size, size)
                entry = {"source": desc, "size": size, "filter": fname, "crc32": crc(pv.astype("<f4")),
                         "samples": []}
                flat = pv.reshape(-1)
                for i in [0, flat.size - 1] + wr.rng.integers(0, flat.size, 128).tolist():
                    entry["samples"].append([int(i), float(flat[i])])
                if rel and size == 224 and fname == "bicubic":
                    entry["full"] = "tensor/photo_224_bicubic.f32"
                    wr.path(entry["full"]).write_bytes(pv.astype("<f4").tobytes())
                wr.manifest["tensor"].append(entry)
                if fname == "bicubic":
                    ref_u8 = np.array(pil.convert("RGB").resize((size, size), Image.Resampling.BICUBIC))
                    fu8, fx = fast_like(rgb, size)
                    du8 = np.abs(fu8.astype(int) - ref_u8.astype(int))
                    dx = np.abs(fx - pv)
                    fast.append({"source": desc, "size": size,
                                 "uint8_max_abs_diff": int(du8.max()),
                                 "uint8_fraction_differing": float((du8 > 0).mean()),
                                 "tensor_max_abs_diff": float(dx.max()),
                                 "tensor_mean_abs_diff": float(dx.mean())})
    wr.manifest["fast_backend_vs_pil"] = fast

    # Non-default normalisation: every uint8 value through transformers' arithmetic.
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    p = SiglipImageProcessorPil(do_resize=False, image_mean=mean, image_std=std)
    lut = p(Image.fromarray(ramp), return_tensors="np")["pixel_values"][0]  # [3, 1, 256]
    wr.path("tensor/lut_imagenet.f32").write_bytes(lut.astype("<f4").tobytes())
    wr.manifest["lut"] = {"image_mean": mean, "image_std": std, "rescale_factor": 1 / 255,
                          "values": "tensor/lut_imagenet.f32"}


def main():
    check_versions()
    if OUT.exists():
        for p in sorted(OUT.rglob("*"), reverse=True):
            p.unlink() if p.is_file() else p.rmdir()
    wr = Writer()
    wr.manifest["versions"] = {
        "pillow": PIL.__version__, "pillow_libjpeg_turbo": features.version("libjpeg_turbo"),
        "transformers": transformers.__version__, "numpy": np.__version__, "seed": SEED,
    }
    make_decode(wr)
    make_orientation(wr)
    make_resize(wr)
    make_random_resizes(wr)
    make_tensors(wr)
    wr.path("manifest.json").write_text(json.dumps(wr.manifest, separators=(",", ":")) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")
    for f in wr.manifest["fast_backend_vs_pil"]:
        print("fast backend vs PIL:", f)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
