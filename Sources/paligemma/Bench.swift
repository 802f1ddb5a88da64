import ArgumentParser
import Foundation
import PaliGemma
import PaliGemmaJSON

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Time load, vision tower, prefill and decode on a checkpoint (use a release build).",
        discussion: """
        Example:
          swift run -c release paligemma random-checkpoint --preset paligemma-3b-224 --output /tmp/pg1-224
          swift run -c release paligemma bench --model /tmp/pg1-224 --new-tokens 16 --json
        """
    )

    @Option(help: "Checkpoint folder. Default: the bundled shapes model.") var model: String?
    @Option(name: .customLong("prompt-tokens"), help: "Text tokens in the prompt (besides image tokens, <bos> and \"\\n\").")
    var promptTokens = 8
    @Option(name: .customLong("new-tokens"), help: "Tokens to decode.") var newTokens = 16
    @Option(help: "Images in the prompt (as the frames of a video: 16 at 224 px are 4,096 image tokens).") var images = 1
    @Option(name: .customLong("vision-batches"), parsing: .singleValue,
            help: "Instead of generating, time the vision tower over --images images encoded this many at a time (repeatable: the sizes are measured in turn, --runs rounds).")
    var visionBatches: [Int] = []
    @Option(name: .customLong("decode-batches"), parsing: .singleValue,
            help: "Instead of generating, prefill one prompt, copy its KV cache to this many sequences and time --new-tokens decode steps of all of them at once, as the server batches them (repeatable: the sizes are measured in turn).")
    var decodeBatches: [Int] = []
    @Option(name: .customLong("prefill-pieces"), parsing: .singleValue,
            help: "Instead of generating, time the decoder's prefill run in pieces as the server runs it, each feed-forward half cut into pieces of at most this many rows (repeatable; whole halves are always measured as the reference; --runs rounds).")
    var prefillPieces: [Int] = []
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: precisionHelp) var precision: Precision?
    @Option(help: "Measure this many times in one process and report the last run (the first also maps the weights in).")
    var runs = 1
    @Option(help: "Weights in memory: none (as stored), int8 or int4 (decoder quantized at load; a folder from `paligemma quantize` loads as it is: leave this at none).")
    var quantize: String = "none"
    @Option(name: [.customLong("agreement"), .customLong("int8-agreement")],
            help: "Instead of timing, compare the --quantize weights and --precision (int8 weights if neither is given) with the stored weights and exact products over this many greedy steps.")
    var agreement: Int?
    @Flag(help: "Also measure this machine's read bandwidth and FMA peak and report the floors (decode, prefill, vision) for the same work.")
    var floors = false
    @Flag(help: "Print one JSON object.") var json = false
    @Flag(help: "Instead of generating, time LoRA training steps (batch 1; --prompt-tokens, --suffix-tokens; --runs steps).")
    var train = false
    @Option(name: .customLong("suffix-tokens"), help: "With --train: supervised suffix tokens (before <eos>).") var suffixTokens = 32
    @Option(help: "With --train: lora (rank 8, PEFT's default targets), attention or full.") var method = "lora"
    @Flag(help: "With --train: recompute activations in the backward pass (gradient checkpointing).") var recompute = false
    @OptionGroup var configKeys: ConfigKeyArguments

    func run() throws {
        guard images >= 1 else { throw ValidationError("--images must be at least 1") }
        if let threads { Kernels.threads = threads }
        // A training step runs exact products unless asked, as `finetune` does.
        if train { Kernels.precision = precision ?? .exact } else { Kernels.useFrontEndPrecision(precision) }
        guard let quantization = Quantization(rawValue: quantize) else { throw ValidationError("--quantize must be none, int8 or int4") }
        let directory: URL
        do {
            directory = try modelURL(model)
            // The benchmark loads the folder itself; its config is checked here once, for the
            // warning (or --strict-config).
            configKeys.warnAboutUnknownKeys(try Checkpoint(directory: directory, configStrictness: configKeys.strictness).config)
        } catch {
            fail(error)
        }
        if !visionBatches.isEmpty {
            guard visionBatches.allSatisfy({ $0 >= 1 }) else { throw ValidationError("--vision-batches must be at least 1") }
            do {
                let timings = try Benchmark.visionBatches(directory: directory, images: images, batches: visionBatches,
                                                          rounds: runs, quantization: quantization)
                if json {
                    print(try JSONOutput.string(timings))
                } else {
                    for t in timings {
                        print(String(format: "vision, %d images %d at a time: best %.3f s (%.3f s an image); runs %@", t.images, t.batch, t.best,
                                     t.best / Double(t.images), t.seconds.map { String(format: "%.3f", $0) }.joined(separator: ", ")))
                    }
                }
            } catch {
                fail(error)
            }
            return
        }
        if !decodeBatches.isEmpty {
            guard decodeBatches.allSatisfy({ $0 >= 1 && $0 <= 256 }) else { throw ValidationError("--decode-batches must be 1 to 256") }
            do {
                let timings = try Benchmark.decodeBatches(directory: directory, promptTokens: promptTokens, sequences: decodeBatches,
                                                          steps: newTokens, quantization: quantization)
                if json {
                    print(try JSONOutput.string(timings))
                } else {
                    let one = timings.first { $0.sequences == 1 }?.tokensPerSecond
                    for t in timings {
                        let ratio = one.map { String(format: ", %.2f× one sequence", t.tokensPerSecond / $0) } ?? ""
                        print(String(format: "decode, %d sequence%@ at once: %.1f ms a step (median of %d, fastest %.1f), %.2f tokens/s%@",
                                     t.sequences, t.sequences == 1 ? "" : "s", t.msPerStep, t.steps, t.msMin, t.tokensPerSecond, ratio))
                    }
                }
            } catch {
                fail(error)
            }
            return
        }
        if !prefillPieces.isEmpty {
            guard prefillPieces.allSatisfy({ $0 >= 0 }) else { throw ValidationError("--prefill-pieces must be 0 or more rows") }
            do {
                let timings = try Benchmark.prefillPieces(directory: directory, promptTokens: promptTokens, rows: prefillPieces,
                                                          rounds: runs, quantization: quantization)
                if json {
                    print(try JSONOutput.string(timings))
                } else {
                    for t in timings {
                        print(String(format: "prefill, feed-forward pieces of %@: %d pieces, best %.3f s (runs %@), slowest feed-forward piece %.3f s, other %.3f s, logits %@",
                                     t.rows == 0 ? "whole halves" : "\(t.rows) rows", t.pieces, t.best,
                                     t.seconds.map { String(format: "%.3f", $0) }.joined(separator: ", "),
                                     t.slowestFeedForwardPiece, t.slowestOtherPiece, t.identical ? "identical" : "DIFFERENT"))
                    }
                    if let t = timings.first {
                        print(String(format: "prefill as one forward call: best %.3f s", t.forwardBest))
                    }
                }
            } catch {
                fail(error)
            }
            return
        }
        if train {
            do {
                let m: TrainingMethod = method == "attention" ? .attention : method == "full" ? .full : .lora(LoRAConfig())
                let r = try Benchmark.trainingStep(directory: directory, method: m, promptTokens: promptTokens,
                                                   suffixTokens: suffixTokens, quantization: quantization, runs: runs,
                                                   recompute: recompute)
                if json {
                    print(try JSONOutput.string(r))
                } else {
                    print(String(format: "%@: %.2f s per step (%.3f examples/s), steps %@, loss %@, peak RSS %.2f GiB, %d threads, %@",
                                 r.method, r.secondsPerStep, r.examplesPerSecond,
                                 r.stepSeconds.map { String(format: "%.2f", $0) }.joined(separator: " "),
                                 r.loss.map { String(format: "%.3f", $0) }.joined(separator: " "),
                                 Double(r.peakRSSBytes) / 1073741824, r.threads, r.isa))
                }
            } catch {
                fail(error)
            }
            return
        }
        if let steps = agreement {
            do {
                let fast = precision == .fast
                let r = try Benchmark.agreement(directory: directory, promptTokens: promptTokens, steps: steps,
                                                quantization: quantization == .none && !fast ? .int8 : quantization,
                                                precision: precision ?? .exact)
                print(try JSONOutput.string(r))
            } catch {
                fail(error)
            }
            return
        }
        do {
            let r = try Benchmark.run(directory: directory,
                                      promptTokens: promptTokens, newTokens: newTokens, quantization: quantization,
                                      runs: runs, floors: floors, images: images)
            if json {
                print(try JSONOutput.string(r))
            } else {
                print(String(format: "load %.3f s, vision %.3f s (%d image%@), prefill %.3f s (%d tokens), time to first token %.3f s",
                             r.loadSeconds, r.visionSeconds, r.images, r.images == 1 ? "" : "s", r.prefillSeconds, r.promptTokens, r.ttftSeconds))
                print(String(format: "decode %.1f ms/token (min %.1f, max %.1f, %d tokens), peak RSS %.2f GiB, %d threads, %@, weights %@, %@ products%@",
                             r.decodeMsPerToken, r.decodeMsMin, r.decodeMsMax, r.newTokens,
                             Double(r.peakRSSBytes) / 1073741824, r.threads, r.isa, r.quantization, r.precision,
                             r.fastKernel == "none" ? "" : " (\(r.fastKernel))"))
                if let f = r.floors {
                    let probes = { (values: [Double]) in values.map { String(format: "%.1f", $0) }.joined(separator: ", ") }
                    print(String(format: "floors here (read %.1f GB/s, best of %@; FMA peak %.0f GFLOP/s, best of %@): decode %.1f ms/token (%.2f GB), prefill %.2f s, vision %.2f s",
                                 f.readBandwidthGBs, probes(f.readBandwidthProbes), f.fmaPeakGFLOPs, probes(f.fmaPeakProbes),
                                 f.decodeFloorMs, Double(f.decodeBytesPerToken) / 1e9, f.prefillFloorSeconds, f.visionFloorSeconds))
                    if f.bf16PeakGFLOPs > 0 {
                        print(String(format: "bf16 floors (%@ peak %.0f GFLOP/s): prefill %.2f s, vision %.2f s",
                                     f.bf16Kernel, f.bf16PeakGFLOPs, f.bf16PrefillFloorSeconds, f.bf16VisionFloorSeconds))
                    }
                    if let v = r.visionFloorShare, let p = r.prefillFloorShare, let d = r.decodeFloorShare {
                        print(String(format: "share of the floor of the instructions used: vision %.0f%%, prefill %.0f%%, decode %.0f%%",
                                     v * 100, p * 100, d * 100))
                    }
                }
            }
        } catch {
            fail(error)
        }
    }
}

struct RandomCheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "random-checkpoint",
        abstract: "Write a checkpoint folder with random weights in a published shape (for benchmarks) or any config.json's (to train from scratch).",
        discussion: "Presets: \(Presets.names.joined(separator: ", "))"
    )

    @Option(help: "Published shape to imitate.") var preset: String?
    @Option(help: "A config.json to give random weights instead of a preset (its torch_dtype is replaced by --dtype's); the tokenizer and preprocessor files beside it are copied too.") var config: String?
    @Option(help: "Weight dtype: bf16, f16 or f32.") var dtype = "bf16"
    @Option(help: "Output folder (must not hold a checkpoint already).") var output: String
    @Option(help: "Random seed.") var seed: UInt64 = 0
    @Option(name: .customLong("loc-embeddings"), help: ArgumentHelp("The embedding rows of <loc0000>…<loc1023> (found in the tokenizer beside --config): random like every other token, or sinusoidal (sin and cos of the coordinate at periods 2048 down to 4, so that near coordinates start near; for training from scratch).", valueName: "random|sinusoidal"))
    var locEmbeddings = "random"
    @Option(name: .customLong("position-embeddings"), help: ArgumentHelp("SigLIP's position embeddings: random (transformers' initialisation) or sincos (the 2D sin-cos table of the patch grid, as in MAE; for training from scratch).", valueName: "random|sincos"))
    var positionEmbeddings = "random"

    func run() throws {
        guard positionEmbeddings == "random" || positionEmbeddings == "sincos" else {
            throw ValidationError("--position-embeddings must be random or sincos")
        }
        guard locEmbeddings == "random" || locEmbeddings == "sinusoidal" else {
            throw ValidationError("--loc-embeddings must be random or sinusoidal")
        }
        if locEmbeddings == "sinusoidal" && config == nil {
            throw ValidationError("--loc-embeddings sinusoidal needs --config, with the tokenizer beside it")
        }
        let types: [String: (DType, String)] = ["bf16": (.bfloat16, "bfloat16"), "f16": (.float16, "float16"), "f32": (.float32, "float32")]
        guard let (type, name) = types[dtype] else {
            throw ValidationError("--dtype must be bf16, f16 or f32")
        }
        var presetJSON: String?
        switch (preset, config) {
        case (let preset?, nil):
            guard let j = Presets.json(preset, dtype: name) else {
                throw ValidationError("unknown preset '\(preset)'; known: \(Presets.names.joined(separator: ", "))")
            }
            presetJSON = j
        case (nil, .some):
            break
        default:
            throw ValidationError("give one of --preset and --config")
        }
        do {
            let json = try presetJSON ?? RandomCheckpoint.configJSON(contentsOf: URL(fileURLWithPath: config ?? ""), dtype: name)
            var locRows: Range<Int>?
            if locEmbeddings == "sinusoidal", let config {
                let tokenizer = try Tokenizer.load(directory: URL(fileURLWithPath: config).deletingLastPathComponent())
                guard let first = tokenizer.id(of: "<loc0000>"), tokenizer.id(of: "<loc1023>") == first + 1023 else {
                    throw PaliGemmaError.input("the tokenizer beside \(config) has no consecutive <loc0000>…<loc1023> pieces")
                }
                locRows = Int(first)..<Int(first) + 1024
            }
            var last = -1
            let interactive = isatty(STDERR_FILENO) != 0  // a progress line only on a terminal
            try RandomCheckpoint.write(configJSON: json, dtype: type, to: URL(fileURLWithPath: output), seed: seed,
                                       locRows: locRows, sincosPositions: positionEmbeddings == "sincos") { done, total in
                let percent = done * 100 / max(total, 1)
                if interactive && percent != last {
                    last = percent
                    FileHandle.standardError.write(Data("\rwriting \(percent)% of \(total / 1_048_576) MiB".utf8))
                }
            }
            if interactive { FileHandle.standardError.write(Data("\n".utf8)) }
            if let config {
                let from = URL(fileURLWithPath: config).deletingLastPathComponent()
                let copied = try RandomCheckpoint.copyCompanionFiles(from: from, to: URL(fileURLWithPath: output))
                if !copied.isEmpty { print("copied \(copied.joined(separator: ", ")) from \(from.path)") }
            }
        } catch {
            fail(error)
        }
    }
}
