import ArgumentParser
import Foundation
import PaliGemma

extension Precision: ExpressibleByArgument {}

/// The help of the inference commands' `--precision`.
let precisionHelp = ArgumentHelp(
    "Products in the vision tower and the prompt's prefill: exact (float32, what the parity tests check) or fast (bfloat16 inputs, float32 sums, as PyTorch's bf16). Default: PALIGEMMA_PRECISION if set, else fast where the CPU has AMX or AVX512-BF16 (measured on both to agree with exact on 100% of 200 greedy steps, and closer to transformers' float32 logits than its own bf16 run), else exact.",
    valueName: "exact|fast")

/// Sets the process's precision for an inference command: `option`, else PALIGEMMA_PRECISION
/// (which the kernels read themselves), else fast wherever a fast kernel exists (AMX, or
/// AVX512-BF16 without AMX), else exact. Where both exist AMX is the one used: on the Xeon
/// measured `vdpbf16ps` ran at half the float32 FMA rate, while on AMD Zen 4 (no AMX) it runs at
/// twice it (467 against 234 GFLOP/s, docs/BENCHMARKS.md).
func applyPrecision(_ option: Precision?) {
    if let option {
        Kernels.precision = option
    } else if ProcessInfo.processInfo.environment["PALIGEMMA_PRECISION"] == nil {
        Kernels.precision = Kernels.fastKernelInUse == .none ? .exact : .fast
    }
}
