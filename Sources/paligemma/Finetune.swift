import ArgumentParser
import Foundation
import PaliGemma
import PaliGemmaJSON
import PaliGemmaVideo
#if canImport(Glibc)
import Glibc
#endif

/// Set by SIGINT: the training loop saves and stops at the next step boundary.
nonisolated(unsafe) var interruptRequested: sig_atomic_t = 0

struct Finetune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fine-tune a checkpoint on image + prefix -> suffix examples (LoRA, attention-only or full).",
        discussion: """
        Data: JSON Lines, one example a line: {"image": "a.jpg", "prefix": "caption en", "suffix": "a red circle"}
        (image paths relative to the file; a task such as {"task": "detect", "labels": ["cat"]} may
        replace "prefix"). Inputs and labels are built as transformers' PaliGemmaProcessor builds
        them; the loss is on the suffix and <eos> only.

        Outputs in --output: with LoRA a PEFT adapter (adapter_config.json + adapter_model.safetensors),
        with attention/full a complete checkpoint folder; also training_log.jsonl (or --log),
        loss.png, and trainer_state.safetensors + trainer_options.json for --resume.

        Example:
          paligemma finetune --model M --train train.jsonl --output runs/lora --steps 200 --lr 3e-4
          paligemma generate --model M --adapter runs/lora --image cat.jpg --prompt "caption en"
        """)

    @Option(help: "Checkpoint folder (or a hub id already in the local cache). Default: the bundled shapes model.") var model: String?
    @Option(help: "Training examples (JSON Lines); repeat it to train on several files, their lines in the order given.")
    var train: [String]
    @Option(help: "Evaluation examples (JSON Lines): teacher-forced loss every --eval-every steps.") var eval: String?
    @Option(help: "Folder for the results (must be new or empty, unless --resume or --overwrite).") var output: String
    @Option(help: "lora (default), attention (the decoder's q/k/v/o, float32 copies) or full.") var method = "lora"
    @Option(help: "LoRA rank.") var rank = 8
    @Option(help: "LoRA alpha (scale alpha / rank).") var alpha: Float = 16
    @Option(help: "LoRA dropout on the adapter's input (0: none).") var dropout: Float = 0
    @Flag(name: .customLong("rslora"), help: "Scale LoRA by alpha / sqrt(rank).") var rslora = false
    @Option(help: "LoRA target modules by name, comma-separated (PEFT's target_modules).")
    var targets = LoRAConfig.defaultTargets.joined(separator: ",")
    @Option(help: "With --method full: parts left as stored, comma-separated: vision, patch-embedding, projector, decoder, embeddings.")
    var freeze: String?
    @Option(help: "adamw or sgd.") var optimizer = "adamw"
    @Option(help: "Learning rate.") var lr: Float = 1e-4
    @Option(name: .customLong("weight-decay"), help: "AdamW's decoupled weight decay.") var weightDecay: Float = 0.01
    @Option(name: .customLong("adam-beta1"), help: "AdamW's first-moment decay.") var adamBeta1: Float = 0.9
    @Option(name: .customLong("adam-beta2"), help: "AdamW's second-moment decay (0.95 adapts faster to a changing gradient scale, as in most LLM pre-training).")
    var adamBeta2: Float = 0.999
    @Option(help: "constant or cosine (after the warmup).") var schedule = "cosine"
    @Option(name: .customLong("warmup-steps"), help: "Linear warmup from 0.") var warmupSteps = 0
    @Option(name: .customLong("clip-norm"), help: "Global gradient-norm clipping (0: off).") var clipNorm: Float = 1
    @Option(name: .customLong("batch-size"), help: "Examples per forward/backward group.") var batchSize = 1
    @Option(name: .customLong("grad-accum"), help: "Groups per optimiser step.") var gradAccum = 1
    @Option(help: "Optimiser steps (default: --epochs passes over the data).") var steps: Int?
    @Option(help: "Passes over the data when --steps is not given.") var epochs = 1
    @Option(help: "Random seed (LoRA initialisation, shuffling).") var seed: UInt64 = 0
    @Flag(help: "Shuffle the examples (a new seeded order each epoch); file order otherwise.") var shuffle = false
    @Flag(name: .customLong("group-images"), help: "With --shuffle: shuffle whole images, keeping each image's examples together, so that a small model's step runs its vision tower once per image.")
    var groupImages = false
    @Option(help: "Loss averaging: tokens (over the step's supervised tokens, transformers) or examples (per example, big_vision).")
    var average = "tokens"
    @Option(name: .customLong("init-adapter"), help: "Start LoRA from this PEFT adapter folder instead of a fresh one.")
    var initAdapter: String?
    @Option(help: "Also write one JSON line per optimiser step here (default: training_log.jsonl in --output).") var log: String?
    @Option(name: .customLong("eval-every"), help: "Evaluate every N steps (with --eval).") var evalEvery = 50
    @Option(name: .customLong("eval-tokens"), help: "With --eval: most tokens of the greedy answers scored at each evaluation (0: the loss only).")
    var evalTokens = 32
    @Option(name: .customLong("save-every"), help: "Save the results and the resumable state every N steps (0: at the end only).")
    var saveEvery = 0
    @Flag(name: .customLong("recompute"), help: "Recompute each layer's activations in the backward pass (gradient checkpointing): less memory, about a third more time (half with --precision fast).")
    var recompute = false
    @Flag(help: "Continue the interrupted run in --output from its last saved state.") var resume = false
    @Flag(help: "Replace what --output holds.") var overwrite = false
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: ArgumentHelp("Products of the training forward pass: exact (the default; gradients as the tests check them) or fast (bfloat16 inputs on AMX or AVX512-BF16 where present).", valueName: "exact|fast"))
    var precision: Precision?
    @Option(name: .customLong("parallel-examples"), help: "Workers, each on one thread with its own gradient buffers, running a share of each step's examples (0: one per thread for models under 50 M trained values, else 1; the same results up to float rounding).")
    var parallelExamples = 0
    @OptionGroup var configKeys: ConfigKeyArguments

    func validate() throws {
        guard ["lora", "attention", "full"].contains(method) else { throw ValidationError("--method must be lora, attention or full") }
        guard OptimizerKind(rawValue: optimizer) != nil else { throw ValidationError("--optimizer must be adamw or sgd") }
        guard schedule == "cosine" || schedule == "constant" else { throw ValidationError("--schedule must be constant or cosine") }
        guard LossAveraging(rawValue: average) != nil else { throw ValidationError("--average must be tokens or examples") }
        guard adamBeta1 >= 0 && adamBeta1 < 1, adamBeta2 >= 0 && adamBeta2 < 1 else {
            throw ValidationError("--adam-beta1 and --adam-beta2 must be in [0, 1)")
        }
        guard rank >= 1 else { throw ValidationError("--rank must be at least 1") }
        guard dropout >= 0 && dropout < 1 else { throw ValidationError("--dropout must be in [0, 1)") }
        guard !(resume && overwrite) else { throw ValidationError("--resume and --overwrite exclude each other") }
        guard evalEvery >= 1, saveEvery >= 0 else { throw ValidationError("--eval-every must be >= 1 and --save-every >= 0") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if initAdapter != nil && method != "lora" { throw ValidationError("--init-adapter needs --method lora") }
        if freeze != nil && method != "full" { throw ValidationError("--freeze needs --method full") }
        if groupImages && !shuffle { throw ValidationError("--group-images needs --shuffle") }
        for part in frozenParts.invalid { throw ValidationError("--freeze: unknown part '\(part)' (vision, patch-embedding, projector, decoder, embeddings)") }
    }

    var trainingMethod: TrainingMethod {
        switch method {
        case "attention": return .attention
        case "full": return .full
        default:
            var config = LoRAConfig(rank: rank, alpha: alpha, rslora: rslora,
                                    targets: targets.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
            config.dropout = dropout
            return .lora(config)
        }
    }

    var frozenParts: (parts: Set<ModelPart>, invalid: [String]) {
        let names = (freeze ?? "").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        return (Set(names.compactMap(ModelPart.init(rawValue:))), names.filter { ModelPart(rawValue: $0) == nil })
    }

    var options: TrainingOptions {
        var o = TrainingOptions()
        o.optimizer = OptimizerKind(rawValue: optimizer) ?? .adamw
        o.learningRate = lr
        o.weightDecay = weightDecay
        o.beta1 = adamBeta1
        o.beta2 = adamBeta2
        o.cosine = schedule == "cosine"
        o.warmupSteps = warmupSteps
        o.clipNorm = clipNorm
        o.batchSize = batchSize
        o.gradAccum = gradAccum
        o.steps = steps ?? 0
        o.epochs = epochs
        o.seed = seed
        o.shuffle = shuffle
        o.groupImages = groupImages
        o.averaging = LossAveraging(rawValue: average) ?? .tokens
        o.parallelExamples = parallelExamples
        return o
    }

    func run() throws {
        enableVideoLines()
        do {
            try FinetuneRun(command: self).run()
        } catch let code as ExitCode {
            throw code
        } catch {
            fail(error)
        }
    }
}

/// The settings a run was started with, kept beside its state so `--resume` continues the same run.
struct FinetuneRecord: Codable, Equatable {
    /// The first --train file; the others in `moreTrain` (nil with one, so records written
    /// before --train was repeatable read the same).
    var model: String?, train: String, method: String, rank: Int, alpha: Float, rslora: Bool, targets: String
    var optimizer: String, lr: Float, weightDecay: Float, schedule: String, warmupSteps: Int, clipNorm: Float
    var batchSize: Int, gradAccum: Int, steps: Int?, epochs: Int, seed: UInt64, shuffle: Bool, average: String
    var dropout: Float
    var freeze: String?
    var groupImages: Bool?
    /// nil when the run used the defaults (0.9, 0.999), so records written before these options read the same.
    var adamBeta1: Float?, adamBeta2: Float?
    var moreTrain: [String]?
}

/// One line of the training log.
struct StepLogLine: Encodable {
    let step: Int, loss: Double, lr: Float, gradNorm: Float, examples: Int, tokens: Int, seconds: Double
    let evalLoss: FiniteOrNull<Double>?
    /// Task metrics of the greedy answers to the evaluation examples (with --eval).
    let evalMetrics: EvalMetrics?
    struct EvalMetrics: Encodable {
        let exactMatch: Double, vqaAccuracy: Double, boxF1: Double?, boxMeanIoU: Double?
        enum CodingKeys: String, CodingKey {
            case exactMatch = "exact_match", vqaAccuracy = "vqa_accuracy", boxF1 = "box_f1", boxMeanIoU = "box_mean_iou"
        }
    }
    enum CodingKeys: String, CodingKey {
        case step, loss, lr, gradNorm = "grad_norm", examples, tokens, seconds, evalLoss = "eval_loss", evalMetrics = "eval"
    }
}

struct FinetuneRun {
    let command: Finetune
    let fm = FileManager.default

    func run() throws {
        let c = command
        if let threads = c.threads { Kernels.threads = threads }
        if let precision = c.precision { Kernels.precision = precision }
        let output = expandedURL(c.output)
        let stateURL = output.appendingPathComponent("trainer_state.safetensors")
        let recordURL = output.appendingPathComponent("trainer_options.json")
        guard let firstTrain = c.train.first else { throw PaliGemmaError.input("finetune: --train is required") }
        let record = FinetuneRecord(model: c.model, train: firstTrain, method: c.method, rank: c.rank, alpha: c.alpha, rslora: c.rslora,
                                    targets: c.targets, optimizer: c.optimizer, lr: c.lr, weightDecay: c.weightDecay,
                                    schedule: c.schedule, warmupSteps: c.warmupSteps, clipNorm: c.clipNorm, batchSize: c.batchSize,
                                    gradAccum: c.gradAccum, steps: c.steps, epochs: c.epochs, seed: c.seed, shuffle: c.shuffle,
                                    average: c.average, dropout: c.dropout, freeze: c.freeze,
                                    groupImages: c.groupImages ? true : nil,
                                    adamBeta1: c.adamBeta1 == 0.9 ? nil : c.adamBeta1, adamBeta2: c.adamBeta2 == 0.999 ? nil : c.adamBeta2,
                                    moreTrain: c.train.count > 1 ? Array(c.train.dropFirst()) : nil)
        try prepareOutput(output, stateURL: stateURL, recordURL: recordURL, record: record)
        // One run at a time per folder: an advisory lock, released when the process ends.
        let lockPath = output.appendingPathComponent(".finetune.lock").path
        let lock = open(lockPath, O_CREAT | O_RDWR, 0o644)
        guard lock >= 0, flock(lock, LOCK_EX | LOCK_NB) == 0 else {
            throw PaliGemmaError.io(path: output.path, reason: "another finetune run is using this folder")
        }
        defer { close(lock) }

        let pipeline = try PaliGemmaPipeline(directory: try modelURL(c.model), configStrictness: c.configKeys.strictness)
        c.configKeys.warnAboutUnknownKeys(pipeline.model.config)
        let trainRecords = try c.train.flatMap { try TrainingData.read(jsonl: expandedURL($0)) }
        let evalRecords = try c.eval.map { try TrainingData.read(jsonl: expandedURL($0)) } ?? []
        let trainable: TrainableModel
        if let initAdapter = c.initAdapter {
            // The adapter decides rank, alpha and targets; training continues from its A and B.
            let adapter = try LoRAAdapter(directory: expandedURL(initAdapter))
            var config = try LoRAConfig(adapter: adapter.config)
            config.dropout = c.dropout
            trainable = TrainableModel(model: pipeline.model, method: .lora(config), seed: c.seed)
            try trainable.load(adapter: adapter)
            note("starting from the adapter in \(initAdapter) (rank \(adapter.config.rank)); --rank, --alpha and --targets are taken from it")
        } else {
            trainable = TrainableModel(model: pipeline.model, method: c.trainingMethod, seed: c.seed, freeze: c.frozenParts.parts)
        }
        trainable.recompute = c.recompute
        let trainer = try Trainer(model: trainable, options: c.options, exampleCount: trainRecords.count,
                                  imageKeys: trainRecords.map { $0.images.map(\.path).joined(separator: "\n") })
        if c.resume {
            try trainer.restore(from: SafetensorsFile(path: stateURL.path))
            note("resuming at step \(trainer.step) of \(trainer.totalSteps)")
        }
        note("\(trainRecords.count) training examples, \(trainer.totalSteps) steps of \(c.options.examplesPerStep) examples; "
             + "\(trainable.parameters.count) tensors with \(trainable.trainableCount) values trained (\(c.method))"
             + (trainer.workers > 1 ? "; \(trainer.workers) examples at a time" : ""))

        // Examples are built once and kept while they fit in 512 MB; else rebuilt when needed,
        // each image decoded once per step (by the training workers' threads) and kept for the
        // next step, which grouped images often share.
        let cacheable = trainRecords.reduce(0) { $0 + ($1.video?.count ?? $1.images.count) } * pipeline.model.pixelCount * 4 <= 512 << 20
        var cache: [Int: TrainingExample] = [:]
        var recent: [String: [Float]] = [:]
        func examples(_ indices: [Int]) throws -> [TrainingExample] {
            if cacheable {
                return try indices.map { i in
                    if let e = cache[i] { return e }
                    let e = try TrainingData.example(trainRecords[i], pipeline: pipeline)
                    cache[i] = e
                    return e
                }
            }
            let records = indices.map { trainRecords[$0] }
            var firsts: [(line: Int, url: URL)] = [], seen: Set<String> = []
            for r in records {
                guard r.video == nil else { continue }  // a video's frames are decoded with its example
                for url in r.images where recent[url.path] == nil && seen.insert(url.path).inserted { firsts.append((r.line, url)) }
            }
            var now: [String: [Float]] = [:]
            for (first, pixels) in zip(firsts, try TrainingData.pixels(of: firsts, pipeline: pipeline, threads: trainer.workers)) {
                now[first.url.path] = pixels
            }
            var out: [TrainingExample] = []
            for r in records {
                if r.video != nil {
                    out.append(try TrainingData.example(r, pipeline: pipeline))
                    continue
                }
                var images: [[Float]] = []
                for url in r.images {
                    guard let pixels = now[url.path] ?? recent[url.path] else {
                        throw PaliGemmaError.input("line \(r.line): the image \(url.path) was not decoded")
                    }
                    now[url.path] = pixels
                    images.append(pixels)
                }
                out.append(TrainingData.example(r, images: images, pipeline: pipeline))
            }
            recent = now
            return out
        }
        let evalExamples = try evalRecords.map { try TrainingData.example($0, pipeline: pipeline) }

        let logURL = c.log.map { expandedURL($0) } ?? output.appendingPathComponent("training_log.jsonl")
        var history = c.resume ? try TrainingLog.keep(logURL, upTo: trainer.step) : []
        let logSink = try JSONLinesFile(path: logURL.path, append: c.resume)
        signal(SIGINT) { _ in interruptRequested = 1 }
        let progress = TrainingProgress(total: trainer.totalSteps, start: trainer.step)
        let started = Date()
        var stopped = false
        while trainer.step < trainer.totalSteps {
            if interruptRequested != 0 { stopped = true; break }
            let clock = Date()
            let indices = trainer.batch(step: trainer.step)
            let batch = try examples(indices)
            let report = try trainer.step(batch)
            var evalLoss: Double?
            var metrics: StepLogLine.EvalMetrics?
            if !evalExamples.isEmpty && (report.step % c.evalEvery == 0 || report.step == trainer.totalSteps) {
                evalLoss = try trainer.evaluate(evalExamples)
                if c.evalTokens > 0 {
                    metrics = try evalMetrics(trainer, pipeline: pipeline, output: output, records: evalRecords)
                }
            }
            history.append((report.step, report.loss, evalLoss))
            try logSink.write(StepLogLine(step: report.step, loss: report.loss, lr: report.learningRate, gradNorm: report.gradNorm,
                                          examples: report.examples, tokens: report.tokens, seconds: Date().timeIntervalSince(clock),
                                          evalLoss: evalLoss.map { FiniteOrNull($0) }, evalMetrics: metrics))
            if let metrics {
                var line = String(format: "eval at step %d: exact match %.1f%%, VQA accuracy %.1f%%", report.step,
                                  100 * metrics.exactMatch, 100 * metrics.vqaAccuracy)
                if let f1 = metrics.boxF1, let iou = metrics.boxMeanIoU { line += String(format: ", box F1 %.3f, mean IoU %.3f", f1, iou) }
                progress.note(line)
            }
            progress.update(report, evalLoss: evalLoss, examplesPerSecond: Double(report.examples) / max(Date().timeIntervalSince(clock), 1e-9))
            if c.saveEvery > 0 && report.step % c.saveEvery == 0 && report.step < trainer.totalSteps {
                try save(trainer, pipeline: pipeline, output: output, stateURL: stateURL, history: history)
            }
        }
        progress.finish()
        try save(trainer, pipeline: pipeline, output: output, stateURL: stateURL, history: history)
        if stopped {
            note("interrupted: saved at step \(trainer.step) of \(trainer.totalSteps); continue with --resume")
            throw ExitCode(130)
        }
        note(String(format: "%d steps in %.1f s; results in %@", trainer.step, Date().timeIntervalSince(started), output.path))
    }

    func note(_ s: String) { FileHandle.standardError.write(Data("paligemma: \(s)\n".utf8)) }

    /// Greedy answers to the evaluation examples with the weights as they are now: the current
    /// adapter (or checkpoint) is saved beside the run and loaded the way `paligemma eval` loads it.
    func evalMetrics(_ trainer: Trainer, pipeline: PaliGemmaPipeline, output: URL,
                     records: [TrainingRecord]) throws -> StepLogLine.EvalMetrics {
        let scratch = output.appendingPathComponent(".eval")
        try? fm.removeItem(at: scratch)
        try fm.createDirectory(at: scratch, withIntermediateDirectories: true)
        defer { try? fm.removeItem(at: scratch) }
        try FinetuneOutputs.writeResults(trainer.model, pipeline: pipeline, output: scratch, baseModel: command.model ?? pipeline.directory.path)
        let current: PaliGemmaPipeline
        if case .lora = trainer.model.method {
            current = try PaliGemmaPipeline(directory: pipeline.directory, configStrictness: .lenient, adapter: scratch)
        } else {
            current = try PaliGemmaPipeline(directory: scratch.appendingPathComponent("model"), configStrictness: .lenient)
        }
        let r = try Evaluation.run(pipeline: current, records: records, maxTokens: command.evalTokens)
        return .init(exactMatch: r.exactMatch, vqaAccuracy: r.vqaAccuracy, boxF1: r.detection?.f1, boxMeanIoU: r.detection?.meanIoU)
    }

    /// --output must be new or empty; --resume needs a run made with the same settings; --overwrite clears it.
    func prepareOutput(_ output: URL, stateURL: URL, recordURL: URL, record: FinetuneRecord) throws {
        var isDirectory: ObjCBool = false
        let exists = fm.fileExists(atPath: output.path, isDirectory: &isDirectory)
        if exists && !isDirectory.boolValue { throw PaliGemmaError.io(path: output.path, reason: "exists and is not a folder") }
        let contents = exists ? ((try? fm.contentsOfDirectory(atPath: output.path)) ?? []) : []
        if command.resume {
            guard fm.fileExists(atPath: stateURL.path), let data = fm.contents(atPath: recordURL.path) else {
                throw PaliGemmaError.io(path: output.path, reason: "holds no saved training state to resume (trainer_state.safetensors, trainer_options.json)")
            }
            let saved = try JSONDecoder().decode(FinetuneRecord.self, from: data)
            guard saved == record else {
                throw PaliGemmaError.input("--resume: the options differ from the run saved in \(output.path) (see its trainer_options.json)")
            }
            return
        }
        if !contents.isEmpty {
            guard command.overwrite else {
                throw PaliGemmaError.io(path: output.path, reason: "exists and is not empty; pass --overwrite to replace it or --resume to continue it")
            }
            try fm.removeItem(at: output)
        }
        do { try fm.createDirectory(at: output, withIntermediateDirectories: true) } catch {
            throw PaliGemmaError.io(path: output.path, reason: "cannot create: \(error.localizedDescription)")
        }
        try JSONOutput.fileEncoder.encode(record).write(to: recordURL, options: .atomic)
    }

    /// The results (adapter or checkpoint), the loss curve and the resumable state.
    func save(_ trainer: Trainer, pipeline: PaliGemmaPipeline, output: URL, stateURL: URL,
              history: [(Int, Double, Double?)]) throws {
        try FinetuneOutputs.writeResults(trainer.model, pipeline: pipeline, output: output, baseModel: command.model ?? pipeline.directory.path)
        let tmp = output.appendingPathComponent(".trainer_state.partial.safetensors")
        try SafetensorsWriter.write(trainer.stateTensors(), metadata: ["step": "\(trainer.step)"], to: tmp)
        // rename(2) replaces the old state in one step: killed at any moment, the folder holds the
        // old state or the new one (removing the old one first left a moment with neither).
        guard rename(tmp.path, stateURL.path) == 0 else {
            throw PaliGemmaError.io(path: stateURL.path, reason: "cannot save the training state: \(String(cString: strerror(errno)))")
        }
        try LossCurve.write(history, to: output.appendingPathComponent("loss.png"))
    }
}

/// The training log of a resumed run.
enum TrainingLog {
    /// Keeps the lines of an earlier log up to `step` (the saved state's; later lines belong to
    /// steps the resumed run takes again) and returns their (step, loss, eval loss) for the curve.
    static func keep(_ url: URL, upTo step: Int) throws -> [(Int, Double, Double?)] {
        struct Line: Decodable {
            let step: Int, loss: Double
            let evalLoss: Double?
            enum CodingKeys: String, CodingKey { case step, loss, evalLoss = "eval_loss" }
        }
        guard let text = try? String(contentsOf: url, encoding: .utf8) else { return [] }
        var kept: [Substring] = [], history: [(Int, Double, Double?)] = []
        for raw in text.split(separator: "\n") {
            guard let line = try? JSONDecoder().decode(Line.self, from: Data(raw.utf8)), line.step <= step else { continue }
            kept.append(raw)
            history.append((line.step, line.loss, line.evalLoss))
        }
        do { try Data((kept.map { $0 + "\n" }.joined()).utf8).write(to: url, options: .atomic) } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot rewrite the training log: \(error.localizedDescription)")
        }
        return history
    }
}

/// A progress line on stderr: step, loss, learning rate, examples per second and time left.
final class TrainingProgress {
    let total: Int, start: Int
    let began = Date()
    let interactive = isatty(2) != 0
    init(total: Int, start: Int) {
        self.total = total
        self.start = start
    }
    func update(_ r: StepReport, evalLoss: Double?, examplesPerSecond: Double) {
        let done = r.step - start
        let perStep = Date().timeIntervalSince(began) / Double(max(done, 1))
        let eta = BatchProgress.clock(perStep * Double(total - r.step))
        var line = String(format: "step %d/%d  loss %.4f  lr %.2e  |g| %.3f  %.2f ex/s  ETA %@", r.step, total, r.loss,
                          Double(r.learningRate), Double(r.gradNorm), examplesPerSecond, eta)
        if let evalLoss { line += String(format: "  eval %.4f", evalLoss) }
        if interactive && evalLoss == nil {
            FileHandle.standardError.write(Data(("\r" + line + "   ").utf8))
        } else {
            FileHandle.standardError.write(Data(((interactive ? "\r" : "") + line + "\n").utf8))
        }
    }
    func note(_ s: String) { FileHandle.standardError.write(Data(((interactive ? "\r" : "") + "paligemma: " + s + "\n").utf8)) }
    func finish() { if interactive { FileHandle.standardError.write(Data("\n".utf8)) } }
}

/// Training and evaluation lines with "video" decode their frames with PaliGemmaVideo.
func enableVideoLines() {
    TrainingData.videoDecoder = { file, sampling in try VideoReader.frames(path: file.path, sampling: sampling).frames }
}
