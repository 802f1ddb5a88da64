// swift-tools-version: 6.0
import PackageDescription

// Layers (each knows only those below it):
//   1. CPaliGemmaKernels  — C SIMD kernels chosen at run time, thread pool
//   2. PaliGemma/Tensor   — tensors and ops, the paged KV cache, the seeded random generator
//   3. PaliGemma/Formats, PaliGemmaTokenizer, PaliGemmaImage — file formats
//   4. PaliGemma/Models   — SigLIP, Gemma, Gemma 2, projector, PaliGemma
//   5. PaliGemma/Generation — sampling, the token generator and batched stepping, the pipeline, the answer's JSON and dump
//      PaliGemma/Tasks      — the task type (prompts, JSON), answers parsed into boxes and masks
//      PaliGemma/Checkpoints — writing and summarising checkpoint folders (quantized, random,
//                              inspect); above Models because it builds models to check them
//      PaliGemma/Benchmark  — timing runs, this machine's floors, the mask decoder benchmark
//   6. paligemma          — command-line front end (arguments, printing, stderr notes, batch files)
let package = Package(
    name: "PaliGemma",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "PaliGemma", targets: ["PaliGemma"]),
        .executable(name: "paligemma", targets: ["paligemma"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        .target(name: "CPaliGemmaKernels"),
        .target(name: "PaliGemmaJSON"),
        .target(name: "PaliGemmaTokenizer", dependencies: ["PaliGemmaJSON"]),
        // System codecs: the libraries Pillow itself decodes with (see README).
        .systemLibrary(
            name: "CJPEG",
            path: "Sources/CJPEG",
            pkgConfig: "libjpeg",
            providers: [.apt(["libjpeg62-turbo-dev"]), .brew(["jpeg-turbo"])]
        ),
        .systemLibrary(
            name: "CPNG",
            path: "Sources/CPNG",
            pkgConfig: "libpng",
            providers: [.apt(["libpng-dev"]), .brew(["libpng"])]
        ),
        // System zlib: inflates deflated members of .npz archives (the mask decoder checkpoint).
        .systemLibrary(
            name: "CZlib",
            path: "Sources/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"]), .brew(["zlib"])]
        ),
        // C glue: libjpeg/libpng error handling needs setjmp/longjmp, which Swift cannot do;
        // also the fixed-point resampling kernels.
        .target(name: "CImageCodecs", dependencies: ["CJPEG", "CPNG"]),
        .target(name: "PaliGemmaImage", dependencies: ["CImageCodecs"]),
        .target(
            name: "PaliGemma",
            dependencies: ["CPaliGemmaKernels", "CZlib", "PaliGemmaJSON", "PaliGemmaTokenizer", "PaliGemmaImage"]
        ),
        .executableTarget(
            name: "paligemma",
            dependencies: [
                "PaliGemma",
                "PaliGemmaJSON",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks (release builds; JSON output)
        .executableTarget(name: "paligemma-tokenizer-bench", dependencies: ["PaliGemmaTokenizer", "PaliGemmaJSON"]),
        .executableTarget(name: "paligemma-image-bench", dependencies: ["PaliGemmaImage", "PaliGemmaJSON"]),
        .executableTarget(name: "paligemma-mask-bench", dependencies: ["PaliGemma", "PaliGemmaJSON"]),
        // Fixtures are read through #filePath, not bundled.
        .testTarget(name: "PaliGemmaTests", dependencies: ["PaliGemma", "PaliGemmaJSON", "CPaliGemmaKernels", "paligemma"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "PaliGemmaTokenizerTests", dependencies: ["PaliGemmaTokenizer"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "PaliGemmaImageTests", dependencies: ["PaliGemmaImage"],
                    exclude: ["Fixtures"]),
    ]
)
