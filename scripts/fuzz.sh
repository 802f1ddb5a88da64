#!/usr/bin/env bash
# Fuzzing with libFuzzer (docs/RELIABILITY.md has the campaigns and what they found).
#
#   scripts/fuzz.sh build                      build .build-fuzz/release/paligemma-fuzz
#   scripts/fuzz.sh run TARGET [SECONDS] [RUNS] [-- LIBFUZZER FLAGS]
#                                              one campaign: until SECONDS (default 1800) or RUNS
#                                              executions (default 1,000,000), whichever first
#   scripts/fuzz.sh merge TARGET               minimise the campaign's corpus into Fuzz/corpus/TARGET
#   scripts/fuzz.sh replay [TARGET...]         run every committed input (the plain debug build;
#                                              `swift test` does the same in FuzzCorpusTests)
#   scripts/fuzz.sh list
#
# The build: every Swift module with AddressSanitizer and libFuzzer's coverage (edges, compare
# tracing), the C targets with AddressSanitizer and UndefinedBehaviorSanitizer, linked with
# libFuzzer's library without its main() (SwiftPM's executables bring their own; the target's
# main calls LLVMFuzzerRunDriver). The flags stay here, not in Package.swift.
#
# A campaign keeps its growing corpus in .build-fuzz/work/TARGET (seeded from Fuzz/corpus/TARGET)
# and writes crashes, leaks and timeouts to .build-fuzz/findings/TARGET/; a line per campaign goes
# to .build-fuzz/campaigns.tsv (target, runs, seconds, coverage, features, corpus, findings).
set -euo pipefail
cd "$(dirname "$0")/.."
SCRATCH=.build-fuzz
BIN=$SCRATCH/release/paligemma-fuzz

libfuzzer() {
    local resource
    resource="$(swiftc -print-target-info | python3 -c 'import json,sys; print(json.load(sys.stdin)["paths"]["runtimeResourcePath"])')"
    local lib
    lib="$(find "$resource/../clang" "$(dirname "$(dirname "$(command -v swiftc)")")/lib/clang" -name 'libclang_rt.fuzzer_no_main-x86_64.a' 2>/dev/null | head -1)"
    [ -n "$lib" ] || { echo "libclang_rt.fuzzer_no_main not found in the Swift toolchain" >&2; exit 2; }
    echo "$lib"
}

cmd="${1:-}"
shift || true
case "$cmd" in
build)
    lib="$(libfuzzer)"
    swift build -c release --scratch-path "$SCRATCH" --product paligemma-fuzz \
        -Xswiftc -DFUZZING -Xswiftc -sanitize=address \
        -Xswiftc -sanitize-coverage=edge,trace-cmp,inline-8bit-counters,pc-table \
        -Xcc -fsanitize=address,undefined -Xcc -fno-sanitize-recover=undefined \
        -Xlinker "$lib" -Xlinker -lstdc++ -Xlinker -lubsan
    ;;
run)
    target="$1"; shift
    seconds="${1:-1800}"; runs="${2:-1000000}"
    [ $# -gt 0 ] && shift; [ $# -gt 0 ] && shift
    [ "${1:-}" = "--" ] && shift
    [ -x "$BIN" ] || { echo "build first: scripts/fuzz.sh build" >&2; exit 2; }
    work=$SCRATCH/work/$target; findings=$SCRATCH/findings/$target
    mkdir -p "$work" "$findings"
    dict=(); [ -f "Fuzz/dict/$target.dict" ] && dict=(-dict="Fuzz/dict/$target.dict")
    log=$SCRATCH/work/$target.log
    start=$(date +%s)
    set +e
    PALIGEMMA_FUZZ_TARGET="$target" ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
        "$BIN" "$work" "Fuzz/corpus/$target" "${dict[@]}" -max_total_time="$seconds" -runs="$runs" \
        -timeout=10 -rss_limit_mb=4096 -malloc_limit_mb=2048 -artifact_prefix="$findings/" -print_final_stats=1 "$@" 2>&1 | tee "$log" | grep -E "^#[0-9]+.*(pulse|DONE)|ERROR|SUMMARY|Test unit|stat::"
    rc=${PIPESTATUS[0]}
    set -e
    elapsed=$(( $(date +%s) - start ))
    executed=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}' | tail -1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -1)
    cov=$(echo "$last" | grep -o 'cov: [0-9]*' | awk '{print $2}')
    ft=$(echo "$last" | grep -o 'ft: [0-9]*' | awk '{print $2}')
    corp=$(echo "$last" | grep -o 'corp: [0-9]*' | awk '{print $2}')
    found=$(find "$findings" -type f | wc -l)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$target" "${executed:-?}" "$elapsed" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$found" >> $SCRATCH/campaigns.tsv
    echo "$target: ${executed:-?} runs in ${elapsed} s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}, findings $found (exit $rc)"
    exit "$rc"
    ;;
merge)
    target="$1"
    [ -x "$BIN" ] || { echo "build first: scripts/fuzz.sh build" >&2; exit 2; }
    tmp=$(mktemp -d)
    PALIGEMMA_FUZZ_TARGET="$target" "$BIN" -merge=1 -timeout=10 "$tmp" "Fuzz/corpus/$target" "$SCRATCH/work/$target" >/dev/null 2>&1
    # Seeds keep their names; what the campaign adds is named by content.
    for f in "$tmp"/*; do
        [ -f "$f" ] || continue
        name="$(basename "$f")"
        cmp -s "$f" "Fuzz/corpus/$target/$name" 2>/dev/null && continue
        found=0
        for s in Fuzz/corpus/"$target"/*; do cmp -s "$f" "$s" && { found=1; break; }; done
        [ $found = 1 ] || cp "$f" "Fuzz/corpus/$target/min-$name"
    done
    rm -rf "$tmp"
    echo "$target: $(ls Fuzz/corpus/$target | wc -l) inputs, $(du -sk Fuzz/corpus/$target | cut -f1) KB"
    ;;
replay)
    swift build --product paligemma-fuzz >/dev/null
    targets=("$@"); [ ${#targets[@]} -gt 0 ] || mapfile -t targets < <(.build/debug/paligemma-fuzz --list)
    for t in "${targets[@]}"; do .build/debug/paligemma-fuzz "$t" "Fuzz/corpus/$t"; done
    ;;
list)
    swift build --product paligemma-fuzz >/dev/null
    .build/debug/paligemma-fuzz --list
    ;;
*)
    sed -n 2,22p "$0"; exit 2 ;;
esac
