import ArgumentParser
import Foundation
import PaliGemma

extension Precision: ExpressibleByArgument {}

/// The help of the inference commands' `--precision`.
let precisionHelp = ArgumentHelp(
    "Products in the vision tower and the prompt's prefill: exact (float32, what the parity tests check) or fast (bfloat16 inputs, float32 sums, as PyTorch's bf16). Default: PALIGEMMA_PRECISION if set, else fast where the CPU has AMX (measured there to agree with exact on 100% of 200 greedy steps, and closer to transformers' float32 logits than its own bf16 run), else exact.",
    valueName: "exact|fast")

/// Sets the process's precision for an inference command: `option`, else PALIGEMMA_PRECISION
/// (which the kernels read themselves), else fast where the fast kernel is AMX, else exact.
/// AVX512-BF16 alone does not make fast the default: on the one such CPU measured (a Xeon with
/// AMX as well) `vdpbf16ps` ran at half the float32 FMA rate.
func applyPrecision(_ option: Precision?) {
    if let option {
        Kernels.precision = option
    } else if ProcessInfo.processInfo.environment["PALIGEMMA_PRECISION"] == nil {
        Kernels.precision = Kernels.fastKernelInUse == .amx ? .fast : .exact
    }
}
