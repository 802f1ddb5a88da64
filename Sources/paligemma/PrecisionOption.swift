import ArgumentParser
import Foundation
import PaliGemma

extension Precision: ExpressibleByArgument {}

/// The help of the inference commands' `--precision`.
let precisionHelp = ArgumentHelp(
    "Products in the vision tower and the prompt's prefill, and in decode steps (one sequence, or up to 8 at once) where the CPU has AVX512-BF16: exact (float32, what the parity tests check) or fast (bfloat16 inputs, float32 sums, as PyTorch's bf16). Default: PALIGEMMA_PRECISION if set, else fast where the CPU has AMX or AVX512-BF16 (measured on both to agree with exact on 100% of 200 greedy steps, and closer to transformers' float32 logits than its own bf16 run), else exact.",
    valueName: "exact|fast")
