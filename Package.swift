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
//   6. PaliGemmaServer    — HTTP front end: the continuous-batching engine, OpenAI-compatible
//                           and typed task endpoints, auth, limits, metrics (Hummingbird 2)
//      paligemma          — command-line front end (arguments, printing, stderr notes, batch files)
let package = Package(
    name: "PaliGemma",
    platforms: [.macOS(.v14)],
    products: [
        .library(name: "PaliGemma", targets: ["PaliGemma"]),
        .executable(name: "paligemma", targets: ["paligemma"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The server's remote image fetches, and a real HTTP client for the server tests.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
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
        // Video files (FFmpeg's libraries): frames for prompts over several images.
        .systemLibrary(
            name: "CFFmpeg",
            path: "Sources/CFFmpeg",
            pkgConfig: "libavformat",
            providers: [.apt(["libavformat-dev", "libavcodec-dev", "libswscale-dev", "libavutil-dev"]), .brew(["ffmpeg"])]
        ),
        .target(name: "CVideoCodec", dependencies: ["CFFmpeg"]),
        .target(name: "PaliGemmaVideo", dependencies: ["CVideoCodec", "CFFmpeg", "PaliGemmaImage"]),
        .target(
            name: "PaliGemma",
            dependencies: ["CPaliGemmaKernels", "CZlib", "PaliGemmaJSON", "PaliGemmaTokenizer", "PaliGemmaImage"]
        ),
        .target(
            name: "PaliGemmaServer",
            dependencies: [
                "PaliGemma",
                "PaliGemmaJSON",
                "PaliGemmaImage",
                "PaliGemmaVideo",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                // Remote images and videos (--allow-remote-images).
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .executableTarget(
            name: "paligemma",
            dependencies: [
                "PaliGemma",
                "PaliGemmaVideo",
                "PaliGemmaJSON",
                "PaliGemmaServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Benchmarks (release builds; JSON output)
        .executableTarget(name: "paligemma-tokenizer-bench", dependencies: ["PaliGemmaTokenizer", "PaliGemmaJSON"]),
        .executableTarget(name: "paligemma-image-bench", dependencies: ["PaliGemmaImage", "PaliGemmaJSON"]),
        .executableTarget(name: "paligemma-mask-bench", dependencies: ["PaliGemma", "PaliGemmaJSON"]),
        .executableTarget(name: "paligemma-server-bench",
                          dependencies: ["PaliGemma", "PaliGemmaJSON", "PaliGemmaServer",
                                         .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                                         .product(name: "NIOCore", package: "swift-nio"),
                                         .product(name: "AsyncHTTPClient", package: "async-http-client")]),
        // Fuzz targets: replays inputs as built here; scripts/fuzz.sh builds it for libFuzzer.
        .executableTarget(name: "paligemma-fuzz",
                          dependencies: ["PaliGemma", "PaliGemmaTokenizer", "PaliGemmaImage", "PaliGemmaVideo", "PaliGemmaServer"]),
        // Fixtures are read through #filePath, not bundled.
        .testTarget(name: "PaliGemmaTests", dependencies: ["PaliGemma", "PaliGemmaJSON", "PaliGemmaVideo", "CPaliGemmaKernels", "paligemma"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "PaliGemmaServerTests",
                    dependencies: ["PaliGemmaServer", "PaliGemma", "PaliGemmaJSON", "PaliGemmaVideo", "paligemma",
                                   .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                                   .product(name: "NIOCore", package: "swift-nio"),
                                   .product(name: "NIOHTTP1", package: "swift-nio"),
                                   .product(name: "Hummingbird", package: "hummingbird"),
                                   .product(name: "AsyncHTTPClient", package: "async-http-client")]),
        .testTarget(name: "PaliGemmaTokenizerTests", dependencies: ["PaliGemmaTokenizer"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "PaliGemmaImageTests", dependencies: ["PaliGemmaImage"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "PaliGemmaVideoTests", dependencies: ["PaliGemmaVideo", "PaliGemmaImage"],
                    exclude: ["Fixtures"]),
    ]
)
