import ArgumentParser
import PaliGemma

extension Precision: ExpressibleByArgument {}

/// The help of every command's `--precision`.
let precisionHelp = ArgumentHelp(
    "Products in the vision tower and the prompt's prefill: exact (float32, as the parity tests check; the default) or fast (bfloat16 inputs, float32 sums, as PyTorch's bf16; on AMX or AVX512-BF16 where the CPU has them, else the same as exact).",
    valueName: "exact|fast")
