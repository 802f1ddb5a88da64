#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpora (Fuzz/corpus/<target>/seed-*) and dictionaries
(Fuzz/dict/<target>.dict): small valid inputs of every format, taken from the test fixtures
or built here, so that libFuzzer starts from files that reach deep into each parser.

    /tmp/ref/bin/python scripts/make_fuzz_seeds.py     (numpy, sentencepiece and protobuf)

Inputs that campaigns found and that are kept as regression cases live beside the seeds
under other names (scripts/fuzz.sh merge); this script only rewrites seed-* files.
"""
import base64, io, json, os, shutil, struct, zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "Fuzz" / "corpus"
DICT = ROOT / "Fuzz" / "dict"
FIX = ROOT / "Tests" / "PaliGemmaTests" / "Fixtures"
IMG = ROOT / "Tests" / "PaliGemmaImageTests" / "Fixtures" / "decode"
VIDEO = ROOT / "Tests" / "PaliGemmaVideoTests" / "Fixtures"
SHAPES = ROOT / "Models" / "shapes-tiny"


def seeds(target, items):
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("seed-*"):
        old.unlink()
    for i, data in enumerate(items):
        if isinstance(data, str):
            data = data.encode()
        (folder / f"seed-{i:02d}").write_bytes(data)


def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def npy(array, version=None):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, array, version=version)
    return buf.getvalue()


def npz(arrays, compressed):
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def main():
    seeds("safetensors", [
        safetensors([("a.weight", "F32", [2, 3], np.arange(6, dtype="<f4").tobytes())]),
        safetensors([("w", "BF16", [4], b"\x80\x3f" * 4), ("b", "F16", [1, 2], b"\x00\x3c" * 2)],
                    metadata={"format": "pt"}),
        safetensors([("empty", "F32", [0, 5], b""), ("n", "I64", [], struct.pack("<q", 7)),
                     ("i", "I8", [3], b"\x01\x02\x03"), ("j", "I32", [1], b"\x00\x00\x00\x01")]),
    ])
    seeds("shard-index", [
        json.dumps({"metadata": {"total_size": 16}, "weight_map": {"a": "model-00001-of-00002.safetensors",
                                                                    "b": "model-00002-of-00002.safetensors"}}),
        json.dumps({"weight_map": {}}),
    ])
    configs = [FIX / "models" / m / "config.json" for m in ("pg1-f32", "pg2-f32", "e2e-pg1")] + [SHAPES / "config.json"]
    seeds("config", [p.read_bytes() for p in configs])
    seeds("preprocessor-config", [(SHAPES / "preprocessor_config.json").read_bytes(),
                                  (FIX / "models" / "e2e-pg2" / "preprocessor_config.json").read_bytes()])
    seeds("npy", [
        npy(np.arange(6, dtype="<f4").reshape(2, 3)),
        npy(np.arange(4, dtype=">f2").reshape(2, 2)),
        npy(np.asfortranarray(np.arange(6, dtype="<f4").reshape(2, 3))),
        npy(np.zeros((0, 3), dtype="<f4"), version=(2, 0)),
        npy(np.float32(1.5).reshape(())),
    ])
    seeds("npz", [
        npz({"a": np.arange(3, dtype="<f4"), "b": np.ones((2, 2), dtype="<f2")}, compressed=False),
        npz({"x": np.arange(8, dtype="<f4").reshape(2, 4)}, compressed=True),
        (FIX / "masks" / "savez_stored.npz").read_bytes(),
    ])
    seeds("video", [(VIDEO / name).read_bytes() for name in
                    ("h264.mp4", "vp9-odd.webm", "vfr.mkv", "truncated.mp4", "rotated.mp4", "no-index.mp4")])
    seeds("adapter-config", [p.read_bytes() for p in sorted((FIX / "adapters").glob("*/adapter_config.json"))])
    parity = (FIX / "shapes-parity" / "data.jsonl").read_text().splitlines()
    seeds("finetune-jsonl", [
        "\n".join(parity[:8]) + "\n",
        '{"image": "a.png", "task": "detect", "labels": ["cat", "dog"], "suffix": "<loc0001><loc0002><loc0003><loc0004> cat"}\r\n',
        '\ufeff{"image": "/abs/b.jpg", "prompt": "caption en", "answer": "a cat"}\n\n{"image": "c.png", "task": "answer", "lang": "fr", "question": "quoi ?", "suffix": "rien"}\n',
    ])
    seeds("batch-line", [
        '{"id": "a", "image": "scene.jpg", "prompt": "caption en", "max_tokens": 8, "temperature": 0.7, "top_k": 5, "top_p": 0.9, "seed": 3}',
        '{"id": 7, "images": ["a.png", "/abs/b.jpg"], "task": "answer", "lang": "en", "question": "what is it?"}',
        '{"video": "clip.mp4", "frames": 4, "stride": 2, "start": 0.5, "task": "caption"}',
        '{"image": "a.png", "task": "detect", "labels": ["cat", "dog"]}',
        '{"id": "a", "line": 1, "image": "/x/scene.jpg", "prompt": "caption en", "text": "a cat", "tokens": [1, 2]}',
        '{"id": "b", "line": 2, "error": "line 2: not a JSON object"}',
    ])
    seeds("answer", [
        "<loc0100><loc0200><loc0300><loc0400> circle ; <loc0010><loc0020><loc0900><loc1023> red square",
        "<loc0256><loc0256><loc0768><loc0768><seg001><seg127><seg064><seg000><seg010><seg020><seg030><seg040><seg050><seg060><seg070><seg080><seg090><seg100><seg110><seg120> cat",
        "<loc0001><loc0002> partial ; <loc9999> x ; plain text",
        "",
    ])
    images = sorted(p for p in IMG.iterdir() if p.suffix in (".png", ".jpg", ".pnm") and p.stat().st_size <= 3000)
    seeds("image", [p.read_bytes() for p in images[:24]])
    seeds("tokenizer-model", [small_sentencepiece()])
    seeds("tokenizer-json", [small_tokenizer_json()])
    png = (IMG / "png_p1.png").read_bytes()
    url = "data:image/png;base64," + base64.b64encode(png).decode()
    seeds("server-request", [
        json.dumps({"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "caption en"},
                                                                            {"type": "image_url", "image_url": {"url": url}}]}],
                    "max_tokens": 8, "temperature": 0.5, "top_p": 0.9, "seed": 1, "stop": ["\n"], "stream": True,
                    "stream_options": {"include_usage": True}}),
        json.dumps({"prompt": "detect cat", "image": url, "max_completion_tokens": 4, "stop": "x", "n": 1}),
        json.dumps({"image": url, "task": "detect", "labels": ["cat", "dog"], "temperature": 0}),
        json.dumps({"image": "file:///tmp/a.png", "task": "answer", "lang": "en", "question": "what?"}),
        json.dumps({"messages": [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": "data:video/mp4;base64,AAAA",
                                                                                             "frames": 4, "stride": 2, "start": 0.5}}]}]}),
        json.dumps({"prompt": "caption en", "video": "data:video/mp4;base64,AAAA"}),
    ])

    DICT.mkdir(parents=True, exist_ok=True)
    json_tokens = ['"{"', '"}"', '"["', '"]"', '":"', '","', '"\\""', '"true"', '"false"', '"null"', '"-1"',
                   '"1e309"', '"18446744073709551616"', '"\\\\u0000"']
    def words(*ws):
        return json_tokens + ['"%s"' % w.replace('"', '\\"') for w in ws]
    dicts = {
        "safetensors": words("dtype", "shape", "data_offsets", "__metadata__", "F32", "BF16", "F16", "I64", "I32", "I8"),
        "shard-index": words("weight_map", "metadata", "total_size", ".safetensors", "/", ".."),
        "config": words("text_config", "vision_config", "model_type", "paligemma", "gemma", "gemma2", "siglip_vision_model",
                        "hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
                        "intermediate_size", "vocab_size", "image_size", "patch_size", "projection_dim", "num_image_tokens",
                        "image_token_index", "sliding_window", "final_logit_softcapping", "attn_logit_softcapping",
                        "query_pre_attn_scalar", "torch_dtype", "bfloat16", "float32"),
        "preprocessor-config": words("size", "height", "width", "image_mean", "image_std", "resample", "rescale_factor",
                                     "do_resize", "do_normalize", "do_rescale", "do_convert_rgb"),
        "adapter-config": words("peft_type", "LORA", "r", "lora_alpha", "target_modules", "lora_dropout", "use_rslora",
                                "bias", "none", "task_type", "q_proj", "layers_to_transform"),
        "finetune-jsonl": words("image", "prefix", "suffix", "prompt", "task", "lang", "question", "answer", "labels",
                                "detect", "segment", "caption", "<eos>", "<image>") + ['"\\x0a"', '"\\x0d\\x0a"', '"\\xef\\xbb\\xbf"'],
        "server-request": words("messages", "role", "user", "content", "type", "text", "image_url", "url", "data:",
                                ";base64,", "prompt", "image", "max_tokens", "max_completion_tokens", "temperature",
                                "top_p", "seed", "stop", "n", "stream", "stream_options", "include_usage", "task", "labels",
                                "video", "video_url", "frames", "stride", "start"),
        "video": ['"ftyp"', '"moov"', '"mdat"', '"avcC"', '"\\x1aE\\xdf\\xa3"', '"webm"', '"matroska"', '"trak"', '"stts"', '"stsz"'],
        "batch-line": words("id", "image", "images", "video", "frames", "stride", "start", "prompt", "task", "lang", "question",
                            "labels", "label", "max_tokens", "temperature", "top_k", "top_p", "seed", "line", "error", "caption",
                            "detect", "segment", "ocr", "answer"),
        "answer": ['"<loc"', '"<seg"', '"<loc1023>"', '"<seg127>"', '">"', '" ; "', '"0000"', '"9999"'],
    }
    for name, entries in dicts.items():
        (DICT / f"{name}.dict").write_text("\n".join(entries) + "\n")


def small_sentencepiece():
    """The bundled model's tokenizer.model without its <loc>/<seg> pieces (all else kept)."""
    from sentencepiece import sentencepiece_model_pb2 as pb
    m = pb.ModelProto()
    m.ParseFromString((SHAPES / "tokenizer.model").read_bytes())
    keep = [p for p in m.pieces if not (p.piece.startswith("<loc") or p.piece.startswith("<seg"))]
    del m.pieces[:]
    m.pieces.extend(keep)
    return m.SerializeToString()


def small_tokenizer_json():
    """The bundled model's tokenizer.json cut to its first 448 ids (no <loc>, <seg>, <image>)."""
    t = json.loads((SHAPES / "tokenizer.json").read_text())
    t["model"]["vocab"] = {k: v for k, v in t["model"]["vocab"].items() if v < 448}
    t["added_tokens"] = [a for a in t["added_tokens"] if a["id"] < 448]
    return json.dumps(t, ensure_ascii=False).encode()


if __name__ == "__main__":
    main()
