import Foundation

// The training loop's arithmetic: which examples each optimiser step sees, how their losses are
// averaged, clipping, the schedule and the update; and the state a run saves to resume exactly.

/// How a step's loss is averaged over its examples.
public enum LossAveraging: String, Sendable, CaseIterable {
    /// Over all supervised tokens of the step's examples (transformers' default).
    case tokens
    /// Each example's mean, then the mean over examples (big_vision's).
    case examples
}

public enum OptimizerKind: String, Sendable, CaseIterable {
    case adamw, sgd
}

/// Settings of a training run (the `finetune` command's options).
public struct TrainingOptions: Sendable, Equatable {
    public var optimizer: OptimizerKind = .adamw
    public var learningRate: Float = 1e-4
    public var weightDecay: Float = 0.01
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var eps: Float = 1e-8
    /// cosine or constant, after `warmupSteps` of linear warmup from 0.
    public var cosine = true
    public var warmupSteps = 0
    /// Global-norm clipping (0: off).
    public var clipNorm: Float = 1
    /// Examples per forward/backward group, and groups per optimiser step: a step sees
    /// batchSize · gradAccum examples.
    public var batchSize = 1
    public var gradAccum = 1
    /// Optimiser steps in all (when 0, `epochs` passes over the data decide).
    public var steps = 0
    public var epochs = 1
    public var seed: UInt64 = 0
    /// Examples in file order unless shuffled (a new seeded order each epoch).
    public var shuffle = false
    /// With `shuffle`: shuffle whole images instead of examples. The examples of one image (the
    /// trainer's `imageKeys`) stay together in file order, so that a step of a small model runs
    /// the vision tower once per image for all its questions.
    public var groupImages = false
    public var averaging: LossAveraging = .tokens
    /// Workers, each on one thread with its own gradient buffers (the kernels then run
    /// single-threaded), running a share of each step's examples: for small models, whose
    /// matrices are too small to keep every core busy. 1: one example at a time, on all threads; 0: `automaticWorkers`.
    public var parallelExamples = 1

    public init() {}

    /// Workers for `parallelExamples == 0`: every thread for a model under 50 M trained values
    /// (per-worker gradients cost little there), otherwise one.
    public static func automaticWorkers(trainedValues: Int, threads: Int) -> Int {
        trainedValues < 50_000_000 ? max(1, min(threads, TrainingWorker.limit)) : 1
    }

    public var examplesPerStep: Int { batchSize * gradAccum }

    /// Optimiser steps for `count` training examples.
    public func totalSteps(examples count: Int) -> Int {
        steps > 0 ? steps : epochs * ((count + examplesPerStep - 1) / examplesPerStep)
    }

    public func validate() throws {
        func bad(_ s: String) -> PaliGemmaError { .input(s) }
        guard learningRate >= 0, learningRate.isFinite else { throw bad("--lr must be a non-negative number") }
        guard weightDecay >= 0 else { throw bad("--weight-decay must be >= 0") }
        guard clipNorm >= 0 else { throw bad("--clip-norm must be >= 0 (0 turns clipping off)") }
        guard batchSize >= 1, gradAccum >= 1 else { throw bad("--batch-size and --grad-accum must be at least 1") }
        guard steps >= 0, epochs >= 1 || steps > 0 else { throw bad("--steps must be >= 0 and --epochs at least 1") }
        guard warmupSteps >= 0 else { throw bad("--warmup-steps must be >= 0") }
        guard parallelExamples >= 0, parallelExamples <= TrainingWorker.limit else {
            throw bad("--parallel-examples must be in 0...\(TrainingWorker.limit) (0: automatic)")
        }
    }
}

/// What one optimiser step did.
public struct StepReport: Sendable, Equatable {
    /// 1-based.
    public let step: Int
    /// The loss the step computed, before its update.
    public let loss: Double
    public let learningRate: Float
    /// Global gradient norm before clipping.
    public let gradNorm: Float
    public let examples: Int
    public let tokens: Int
}

/// Drives a `TrainableModel` through optimiser steps over a list of examples.
public final class Trainer: @unchecked Sendable {
    public let model: TrainableModel
    public let options: TrainingOptions
    public let exampleCount: Int
    /// Example indices by image, in order of first appearance (for `groupImages`).
    let imageGroups: [[Int]]
    public let totalSteps: Int
    let optimizer: Optimizer
    /// Optimiser steps taken.
    public private(set) var step = 0

    /// `imageKeys`: each example's image (its file), for `groupImages`; nil: each its own.
    public init(model: TrainableModel, options: TrainingOptions, exampleCount: Int, imageKeys: [String]? = nil) throws {
        try options.validate()
        guard exampleCount > 0 else { throw PaliGemmaError.input("no training examples") }
        guard imageKeys.map({ $0.count == exampleCount }) ?? true else {
            throw PaliGemmaError.input("\(imageKeys?.count ?? 0) image keys for \(exampleCount) examples")
        }
        imageGroups = Self.grouped(imageKeys ?? [String?](repeating: nil, count: exampleCount))
        guard !model.parameters.isEmpty else { throw PaliGemmaError.input("the method trains no parameter (no module matched the LoRA targets?)") }
        self.model = model
        self.options = options
        self.exampleCount = exampleCount
        totalSteps = options.totalSteps(examples: exampleCount)
        switch options.optimizer {
        case .adamw:
            optimizer = AdamW(model.parameters, beta1: options.beta1, beta2: options.beta2, eps: options.eps,
                              weightDecay: options.weightDecay)
        case .sgd:
            optimizer = SGD(model.parameters)
        }
    }

    public var schedule: LearningRateSchedule {
        options.cosine ? .cosine(warmupSteps: options.warmupSteps, totalSteps: totalSteps) : .constant(warmupSteps: options.warmupSteps)
    }

    /// The learning rate of update `step` (0-based).
    public func learningRate(step: Int) -> Float { Float(Double(options.learningRate) * schedule.factor(step: step)) }

    /// The example order of `epoch` (0-based): file order, or a seeded shuffle (of examples, or
    /// of whole images with `groupImages`).
    public func order(epoch: Int) -> [Int] {
        guard options.shuffle else { return Array(0..<exampleCount) }
        var rng = Xoshiro256(seed: options.seed &+ 0x5EED &+ UInt64(epoch) &* 0x9E37_79B9)
        func shuffled(_ n: Int) -> [Int] {
            var order = Array(0..<n)
            for i in stride(from: n - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
            return order
        }
        guard options.groupImages else { return shuffled(exampleCount) }
        return shuffled(imageGroups.count).flatMap { imageGroups[$0] }
    }

    /// Indices of the examples optimiser step `step` (0-based) sees: the next
    /// batchSize · gradAccum of the run's sequence of epochs.
    public func batch(step: Int) -> [Int] {
        let n = options.examplesPerStep
        return (0..<n).map { i in
            let k = step * n + i
            return cachedOrder(epoch: k / exampleCount)[k % exampleCount]
        }
    }

    /// The orders of the epochs the last steps drew from, each built once: building the order of
    /// a few hundred thousand examples at every step took a third of a small model's step.
    private var orders: [Int: [Int]] = [:]
    private let ordersLock = NSLock()

    private func cachedOrder(epoch: Int) -> [Int] {
        ordersLock.lock()
        defer { ordersLock.unlock() }
        if let o = orders[epoch] { return o }
        let o = order(epoch: epoch)
        if orders.count >= 2, let oldest = orders.keys.min() { orders[oldest] = nil }
        orders[epoch] = o
        return o
    }

    /// One optimiser step over `examples` (the step's batch, already built): forward and
    /// backward each, average as configured, clip, update.
    public func step(_ examples: [TrainingExample]) throws -> StepReport {
        model.zeroGradients()
        let counts = examples.map { $0.scoredPositions.count }
        let total = counts.reduce(0, +)
        guard total > 0 else { throw PaliGemmaError.input("no supervised token in this step's examples (empty suffixes?)") }
        // Example i's gradient weight: 1 / its share of the step's average.
        let weights = counts.map { n -> Float in
            options.averaging == .tokens ? 1 / Float(total) : n > 0 ? 1 / Float(n * examples.count) : 0
        }
        let groups = self.groups(examples)
        let workers = min(self.workers, groups.count)
        // Example i's loss term, whichever worker ran it; summed in example order below.
        let losses = WorkerSlots<Double>(examples.count)
        if workers > 1 {
            for p in model.parameters { p.prepareWorkers(workers) }
            // Worker w takes groups w, w + workers, …; the first error (by worker) is thrown.
            let errors = WorkerSlots<Error>(workers)
            DispatchQueue.concurrentPerform(iterations: workers) { w in
                TrainingWorker.run(w) {
                    do {
                        for g in stride(from: w, to: groups.count, by: workers) {
                            try run(groups[g], examples, weights: weights, counts: counts, total: total, into: losses)
                        }
                    } catch {
                        errors[w] = error
                    }
                }
            }
            if let error = errors.values.first { throw error }
            for p in model.parameters { p.reduceWorkers() }
        } else {
            for g in groups { try run(g, examples, weights: weights, counts: counts, total: total, into: losses) }
        }
        let loss = losses.values.reduce(0, +)
        let norm = clipGradientNorm(model.parameters, maxNorm: options.clipNorm)
        let lr = learningRate(step: step)
        optimizer.step(lr: lr)
        step += 1
        return StepReport(step: step, loss: loss, learningRate: lr, gradNorm: norm, examples: examples.count, tokens: total)
    }

    /// Forward and backward of the examples `group` of a step, stacked, into the calling
    /// worker's gradients; their terms of the step's loss into `losses`.
    private func run(_ group: [Int], _ examples: [TrainingExample], weights: [Float], counts: [Int], total: Int,
                     into losses: WorkerSlots<Double>) throws {
        let members = group.filter { counts[$0] > 0 }
        guard !members.isEmpty else { return }
        // LoRA dropout's masks (groups of one example when there is dropout): from the run's
        // seed, the step and the example's position.
        var mix = Xoshiro256(seed: options.seed ^ (UInt64(step) << 20) ^ UInt64(members[0]))
        model.dropoutSeed = mix.next()
        let results = try model.accumulate(members.map { examples[$0] }, weights: members.map { weights[$0] })
        for (i, r) in zip(members, results) {
            losses[i] = options.averaging == .tokens ? r.loss / Double(total) : r.loss / Double(counts[i] * examples.count)
        }
    }

    /// How a step's examples are run: each group is one stacked forward and backward pass.
    /// Small models (decoder width up to `stackingWidth`) without dropout stack their examples:
    /// an image's examples stay in one group (one vision pass for all of them) and the images
    /// are dealt to one group per worker, fewest rows first. Otherwise each example is a group.
    func groups(_ examples: [TrainingExample]) -> [[Int]] {
        guard model.model.config.textConfig.hiddenSize <= Self.stackingWidth, !model.hasDropout, examples.count > 1 else {
            return examples.indices.map { [$0] }
        }
        let byImage = Self.grouped(examples.map(\.imageKey))
        let n = max(1, min(workers, byImage.count))
        var groups = [[Int]](repeating: [], count: n), rows = [Int](repeating: 0, count: n)
        for members in byImage {
            let w = rows.indices.min { rows[$0] < rows[$1] } ?? 0
            groups[w] += members
            rows[w] += members.reduce(0) { $0 + examples[$1].ids.count }
        }
        return groups.map { $0.sorted() }
    }

    /// Indices grouped by key, groups in order of first appearance; a nil key is a group of its own.
    static func grouped(_ keys: [String?]) -> [[Int]] {
        var groups: [[Int]] = [], index: [String: Int] = [:]
        for (i, key) in keys.enumerated() {
            if let key, let g = index[key] { groups[g].append(i); continue }
            if let key { index[key] = groups.count }
            groups.append([i])
        }
        return groups
    }

    /// The widest decoder whose examples are stacked (activations of a whole step then fit easily).
    static let stackingWidth = 1024

    /// Examples run at once by `step` (`TrainingOptions.parallelExamples` resolved).
    public var workers: Int {
        options.parallelExamples > 0 ? options.parallelExamples
            : TrainingOptions.automaticWorkers(trainedValues: model.trainableCount, threads: Kernels.threads)
    }

    /// Mean teacher-forced loss (over supervised tokens) of `examples`.
    public func evaluate(_ examples: [TrainingExample]) throws -> Double {
        var sum = 0.0, count = 0
        for e in examples {
            let (l, n) = try model.loss(e)
            sum += l
            count += n
        }
        return count > 0 ? sum / Double(count) : .nan
    }

    // MARK: Saved state

    /// The state `resume` needs: trained values, optimiser moments and the step count.
    public func stateTensors() -> [SafetensorsWriter.Item] {
        var items: [SafetensorsWriter.Item] = []
        for p in model.parameters { items.append(.float32("value." + p.name, shape: p.shape, p.value.values)) }
        if let adam = optimizer as? AdamW {
            for (p, (m, v)) in zip(model.parameters, zip(adam.m, adam.v)) {
                items.append(.float32("adam_m." + p.name, shape: p.shape, m.values))
                items.append(.float32("adam_v." + p.name, shape: p.shape, v.values))
            }
            items.append(.int64("adam_t", shape: [1], [adam.t]))
        }
        items.append(.int64("step", shape: [1], [step]))
        return items
    }

    /// Restores what `stateTensors()` saved (same method and parameters).
    public func restore(from file: SafetensorsFile) throws {
        func floats(_ key: String, _ count: Int) throws -> [Float] {
            guard file.entries[key] != nil else { throw PaliGemmaError.safetensors(path: file.path, tensor: key, reason: "missing from the saved training state") }
            let v = try file.tensor(key).floats()
            guard v.count == count else { throw PaliGemmaError.safetensors(path: file.path, tensor: key, reason: "has \(v.count) values, expected \(count)") }
            return v
        }
        for p in model.parameters { p.value.data.update(from: try floats("value." + p.name, p.count), count: p.count) }
        if let adam = optimizer as? AdamW {
            for (k, p) in model.parameters.enumerated() {
                adam.m[k].data.update(from: try floats("adam_m." + p.name, p.count), count: p.count)
                adam.v[k].data.update(from: try floats("adam_v." + p.name, p.count), count: p.count)
            }
            guard file.entries["adam_t"] != nil else { throw PaliGemmaError.safetensors(path: file.path, tensor: "adam_t", reason: "missing from the saved training state") }
            adam.t = try file.tensor("adam_t").ints().first ?? 0
        }
        guard file.entries["step"] != nil else { throw PaliGemmaError.safetensors(path: file.path, tensor: "step", reason: "missing from the saved training state") }
        step = try file.tensor("step").ints().first ?? 0
    }
}
