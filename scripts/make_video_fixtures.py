#!/usr/bin/env python3
"""Test videos and PyAV's frames of them, for Tests/PaliGemmaVideoTests.

Run by hand, not by CI (the files are committed):
    /tmp/ref/bin/pip install av==14.0.0 safetensors==0.8.0 numpy==2.4.6
    /tmp/ref/bin/python scripts/make_video_fixtures.py

Writes Tests/PaliGemmaVideoTests/Fixtures/:
  h264.mp4        64x48, 30 fps, 40 frames, H.264 (libx264, B-frames), moov first (faststart)
  vp9-odd.webm    63x47 (odd sizes), 25 fps, 20 frames, VP9
  vfr.mkv         64x48, H.264 in Matroska with irregular timestamps (variable frame rate)
  rotated.mp4     h264.mp4's first 10 frames with a display matrix asking for 90 degrees
  truncated.mp4   h264.mp4 cut after 60% of its bytes (the index is whole, the data is not)
  no-index.mp4    an H.264 MP4 written without faststart, cut in half: its index is lost
  audio.m4a       AAC audio only: no video stream
  <case>.safetensors  for each sampling case: indices [F] (int64, among the frames at or after
                  the start time), rgb [F,H,W,3] (uint8, PyAV's frame.to_ndarray(format="rgb24"));
                  metadata: file, count, stride, start, decoded (frames from the start time)

The reference sampler (`sample` below) is the rule big_vision's video configs ask of a reader
with deterministic sampling: frames start, start + stride, ... (counted from the first frame at
or after `start` seconds), `count` of them; then video_replicate_img(count, count): tile the frames
that exist and keep the first `count`.
"""
import fractions
import os

import av
import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "PaliGemmaVideoTests", "Fixtures")


def picture(i, w, h):
    """Frame i: a gradient background with a coloured square moving right and a bar per frame."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (x * 255 // max(w - 1, 1)).astype(np.uint8)
    img[..., 1] = (y * 255 // max(h - 1, 1)).astype(np.uint8)
    img[..., 2] = (40 + 5 * i) % 256
    s = max(6, h // 4)
    x0 = (3 * i) % max(w - s, 1)
    img[h // 3:h // 3 + s, x0:x0 + s] = (250, 250, 30) if i % 2 else (30, 200, 250)
    img[h - 4:h, :min(w, i + 1)] = 255
    return img


def encode(path, codec, w, h, n, rate, container_options=None, times=None, options=None):
    with av.open(path, "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = options or {}
        if times is not None:
            stream.time_base = fractions.Fraction(1, 1000)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(picture(i, w, h), format="rgb24")
            if times is not None:
                frame.pts = times[i]
                frame.time_base = fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def rotate_mp4(path):
    """Writes a 90-degree rotation into the track header's matrix (tkhd version 0: the 3x3
    matrix of 16.16 / 2.30 fixed-point values 48 bytes into the box), which demuxers read as the
    stream's display matrix. (The muxer's old "rotate" metadata key is no longer honoured.)"""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    at = data.find(b"tkhd") - 4
    assert at >= 0 and data[at + 8] == 0, "expected a version-0 tkhd box"
    matrix = [0, 0x00010000, 0, 0xFFFF0000, 0, 0, 0, 0, 0x40000000]
    data[at + 48:at + 84] = b"".join(v.to_bytes(4, "big") for v in matrix)
    with open(path, "wb") as f:
        f.write(bytes(data))


def audio(path):
    with av.open(path, "w") as out:
        stream = out.add_stream("aac", rate=16000)
        t = np.arange(16000) / 16000
        samples = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
        for start in range(0, 16000, 1024):
            frame = av.AudioFrame.from_ndarray(samples[:, start:start + 1024], format="fltp", layout="mono")
            frame.sample_rate = 16000
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def sample(available, count, stride):
    picks = [k * stride for k in range(count) if k * stride < available]
    return [picks[i % len(picks)] for i in range(count)] if picks else []


def frames_from(path, start):
    """PyAV's frames at or after `start` seconds, in decoding (presentation) order."""
    with av.open(path) as c:
        out = []
        for f in c.decode(video=0):
            if f.time is not None and f.time < start - 1e-9:
                continue
            out.append(f.to_ndarray(format="rgb24"))
        return out


def main():
    os.makedirs(OUT, exist_ok=True)
    p = lambda name: os.path.join(OUT, name)
    encode(p("h264.mp4"), "libx264", 64, 48, 40, 30, container_options={"movflags": "faststart"},
           options={"crf": "23", "bframes": "2", "g": "12"})
    encode(p("vp9-odd.webm"), "libvpx-vp9", 63, 47, 20, 25, options={"crf": "30", "b": "0"})
    times = [0, 33, 50, 120, 130, 200, 260, 270, 400, 410, 480, 600, 610, 700, 710, 800]
    encode(p("vfr.mkv"), "libx264", 64, 48, len(times), 30, times=times, options={"bframes": "0"})
    encode(p("rotated.mp4"), "libx264", 64, 48, 10, 30, options={"bframes": "0"})
    rotate_mp4(p("rotated.mp4"))
    with open(p("h264.mp4"), "rb") as f:
        data = f.read()
    with open(p("truncated.mp4"), "wb") as f:
        f.write(data[:len(data) * 6 // 10])
    encode(p("no-index.full.mp4"), "libx264", 64, 48, 20, 30, options={"bframes": "0"})
    with open(p("no-index.full.mp4"), "rb") as f:
        data = f.read()
    os.remove(p("no-index.full.mp4"))
    with open(p("no-index.mp4"), "wb") as f:
        f.write(data[:len(data) // 2])
    audio(p("audio.m4a"))

    cases = [("h264-4x9", "h264.mp4", 4, 9, 0.0), ("h264-16x9", "h264.mp4", 16, 9, 0.0),
             ("h264-3x5-from-0.5s", "h264.mp4", 3, 5, 0.5), ("vp9-odd-5x4", "vp9-odd.webm", 5, 4, 0.0),
             ("vfr-6x2-from-0.1s", "vfr.mkv", 6, 2, 0.1)]
    for name, file, count, stride, start in cases:
        frames = frames_from(p(file), start)
        indices = sample(len(frames), count, stride)
        rgb = np.stack([frames[i] for i in indices])
        save_file({"indices": np.array(indices, np.int64), "rgb": rgb}, p(name + ".safetensors"),
                  metadata={"file": file, "count": str(count), "stride": str(stride), "start": repr(start),
                            "decoded": str(len(frames)), "generator": "scripts/make_video_fixtures.py",
                            "pyav": av.__version__})
        print(f"{name}: {len(frames)} frames from {start} s, indices {indices}, rgb {rgb.shape}")
    with av.open(p("rotated.mp4")) as c:
        v = c.streams.video[0]
        print(f"rotated.mp4: {sum(1 for _ in c.decode(video=0))} frames decode")
    for f in sorted(os.listdir(OUT)):
        print(f"  {f}: {os.path.getsize(p(f))} bytes")


if __name__ == "__main__":
    main()
