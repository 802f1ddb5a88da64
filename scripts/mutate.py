#!/usr/bin/env python3
"""Mutation testing: applies one realistic bug at a time to the source, runs the tests that
should notice it, and reports whether they did (killed) or not (survived).

    python3 scripts/mutate.py                 all mutations
    python3 scripts/mutate.py NAME...         only these (see --list)
    python3 scripts/mutate.py --list

Each mutation replaces one exact piece of code (it must occur exactly once in its file) and
names the test filter that covers it. The file is restored afterwards whatever happens; the
script refuses to touch a file with uncommitted changes. Debug builds, incremental: about a
minute a mutation on two cores. The score goes to docs/RELIABILITY.md by hand.
"""
import subprocess, sys, time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# name, file, original, mutant, test filter
MUTATIONS = [
    ("bpe-tie-rightmost", "Sources/PaliGemmaTokenizer/BPEEncoder.swift",
     "(priority == other.priority && left < other.left)", "(priority == other.priority && left > other.left)",
     "PaliGemmaTokenizerTests"),
    ("bpe-score-lowest", "Sources/PaliGemmaTokenizer/BPEEncoder.swift",
     "priority > other.priority ||", "priority < other.priority ||", "PaliGemmaTokenizerTests"),
    ("safetensors-span-le", "Sources/PaliGemma/Formats/Safetensors.swift",
     "guard bytes == end - begin else", "guard bytes <= end - begin else", "SafetensorsTests"),
    ("safetensors-overlap-touching", "Sources/PaliGemma/Formats/Safetensors.swift",
     "where b.begin < a.end {", "where b.begin < a.end - 1 {", "SafetensorsTests"),
    ("top-p-strict", "Sources/PaliGemma/Generation/Sampler.swift",
     "if mass >= Double(options.topP) { break }", "if mass > Double(options.topP) { break }", "GenerationTests"),
    ("argmax-last-tie", "Sources/PaliGemma/Generation/Sampler.swift",
     "where logits[i] > bestValue {", "where logits[i] >= bestValue {", "GenerationTests"),
    ("top-k-drops-ties", "Sources/PaliGemma/Generation/Sampler.swift",
     "order.prefix { logits[$0] >= threshold }", "order.prefix { logits[$0] > threshold }", "GenerationTests"),
    ("rmsnorm-no-unit-offset", "Sources/CPaliGemmaKernels/ops.c",
     "(x[i] * inv) * (1.0f + (j->w ? j->w[i] : 0.0f));", "(x[i] * inv) * ((j->w ? j->w[i] : 1.0f));",
     "ModelParityTests"),
    ("layernorm-no-bias", "Sources/CPaliGemmaKernels/ops.c",
     "y[i] = v * (j->w ? j->w[i] : 1.0f) + (j->b ? j->b[i] : 0.0f);", "y[i] = v * (j->w ? j->w[i] : 1.0f);",
     "ModelParityTests"),
    ("detection-x-y-swapped", "Sources/PaliGemma/Tasks/Detections.swift",
     "NormalizedBox(xMin: Double(locs[1]) / 1023, yMin: Double(locs[0]) / 1023,",
     "NormalizedBox(xMin: Double(locs[0]) / 1023, yMin: Double(locs[1]) / 1023,", "DetectionParsingTests"),
    ("npy-fortran-ignored", "Sources/PaliGemma/Formats/NPZ.swift",
     "if fortran && shape.count > 1 {", "if false && fortran && shape.count > 1 {", "NPZTests"),
    ("json-tab-escape", "Sources/PaliGemmaJSON/JSON.swift",
     'case UInt8(ascii: "t"): out.append(0x09)', 'case UInt8(ascii: "t"): out.append(0x20)', "JSON"),
]


def run(cmd):
    return subprocess.run(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def main(argv):
    if argv[:1] == ["--list"]:
        for m in MUTATIONS:
            print(f"{m[0]:32} {m[1]}  ({m[4]})")
        return 0
    chosen = [m for m in MUTATIONS if not argv or m[0] in argv]
    results = []
    for name, file, original, mutant, tests in chosen:
        path = ROOT / file
        if run(["git", "diff", "--quiet", "--", file]).returncode != 0:
            print(f"{name}: {file} has uncommitted changes; skipped")
            results.append((name, "skipped"))
            continue
        source = path.read_text()
        if source.count(original) != 1:
            print(f"{name}: the original code occurs {source.count(original)} times in {file}; fix the mutation list")
            results.append((name, "stale"))
            continue
        start = time.time()
        try:
            path.write_text(source.replace(original, mutant))
            build = run(["swift", "build", "--build-tests"])
            if build.returncode != 0:
                outcome = "killed (does not compile)"
            else:
                test = run(["swift", "test", "--skip-build", "--filter", tests])
                outcome = "killed" if test.returncode != 0 else "SURVIVED"
        finally:
            path.write_text(source)
        print(f"{name}: {outcome} ({time.time() - start:.0f} s, tests {tests})", flush=True)
        results.append((name, outcome))
    killed = sum(r.startswith("killed") for _, r in results)
    counted = sum(r.startswith("killed") or r == "SURVIVED" for _, r in results)
    print(f"score: {killed} of {counted} killed")
    return 0 if killed == counted else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
