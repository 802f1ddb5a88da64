import Foundation

// `paligemma eval`: the suffix loss (teacher-forced) and task metrics on greedy answers over a
// JSONL of examples in the fine-tuning format.

/// One example's evaluation.
public struct EvaluationItem: Encodable, Sendable {
    public let line: Int
    public let image: String
    public let prefix: String
    public let reference: String
    public let answer: String
    /// Mean cross-entropy over the suffix and <eos>.
    public let loss: Double
    public let tokens: Int
    public let exactMatch: Bool
    public let vqaMatch: Bool
    /// Box counts when the reference holds boxes.
    public let boxes: BoxSummary?

    public struct BoxSummary: Encodable, Sendable {
        public let predicted: Int, reference: Int, matched: Int
        public let meanIoU: Double
        enum CodingKeys: String, CodingKey { case predicted, reference, matched, meanIoU = "mean_iou" }
    }

    enum CodingKeys: String, CodingKey {
        case line, image, prefix, reference, answer, loss, tokens, exactMatch = "exact_match", vqaMatch = "vqa_match", boxes
    }
}

/// The metrics over a whole file.
public struct EvaluationReport: Encodable, Sendable {
    public var examples = 0
    /// Mean cross-entropy over every supervised token of the file.
    public var loss = 0.0
    public var tokens = 0
    public var exactMatch = 0.0
    public var vqaAccuracy = 0.0
    /// Over the examples whose reference holds boxes (nil when none does).
    public var detection: Detection?

    public struct Detection: Encodable, Sendable {
        public let examples: Int
        public let precision: Double, recall: Double, f1: Double, meanIoU: Double
        enum CodingKeys: String, CodingKey { case examples, precision, recall, f1, meanIoU = "mean_iou" }
    }

    /// The same metrics per group of examples (`paligemma eval --group-by`); nil when not asked.
    public var groups: [Group]?
    public struct Group: Encodable, Sendable {
        public let name: String
        public let report: EvaluationReport
    }
    enum CodingKeys: String, CodingKey {
        case examples, loss, tokens, exactMatch = "exact_match", vqaAccuracy = "vqa_accuracy", detection, groups
    }
}

public enum Evaluation {
    /// Teacher-forced suffix loss of one example: (sum of cross-entropies, scored positions).
    public static func loss(_ example: TrainingExample, model: PaliGemmaModel) throws -> (Double, Int) {
        let features = try example.ids.contains(model.config.imageTokenIndex) ? model.imageFeatures(pixels: example.images) : nil
        let cache = try model.makeCache(capacity: example.ids.count)
        let logits = try model.forward(ids: example.ids, imageFeatures: features, prefixLength: example.prefixLength,
                                       cache: cache, logits: .all)
        var sum = 0.0
        let scored = example.scoredPositions
        for p in scored {
            sum += Ops.crossEntropy(logits.row(p), count: logits.cols, target: try example.target(after: p, vocabulary: logits.cols))
        }
        return (sum, scored.count)
    }

    /// Evaluates every record: loss, greedy answer (up to `maxTokens`), metrics. `onItem` sees
    /// each example's result as it completes. With `groupBy`, the report also holds the same
    /// metrics per group (the closure names each group a record counts in), in order of first
    /// appearance.
    public static func run(pipeline: PaliGemmaPipeline, records: [TrainingRecord], maxTokens: Int,
                           groupBy: ((TrainingRecord) -> [String])? = nil,
                           onItem: (EvaluationItem) throws -> Void = { _ in }) throws -> EvaluationReport {
        var total = Tally()
        var groups: [String: Tally] = [:], order: [String] = []
        for record in records {
            let example = try TrainingData.example(record, pipeline: pipeline)
            let (sum, n) = try loss(example, model: pipeline.model)
            let answer = try pipeline.generate(pixels: example.images, prompt: record.prefix,
                                               options: GenerationOptions(maxNewTokens: maxTokens)).text
            // Boxes are scored where the reference or the answer holds any: boxes given for an
            // absent object (an empty reference) count as false positives.
            let scoresBoxes = AnswerMetrics.hasBoxes(record.suffix) || AnswerMetrics.hasBoxes(answer)
            let counts: AnswerMetrics.BoxCounts? = scoresBoxes ? AnswerMetrics.boxes(answer, record.suffix) : nil
            let item = EvaluationItem(line: record.line, image: record.image.path, prefix: record.prefix, reference: record.suffix,
                                      answer: answer, loss: n > 0 ? sum / Double(n) : 0, tokens: n,
                                      exactMatch: AnswerMetrics.exactMatch(answer, record.suffix),
                                      vqaMatch: AnswerMetrics.vqaMatch(answer, record.suffix),
                                      boxes: counts.map { .init(predicted: $0.predicted, reference: $0.reference, matched: $0.matched, meanIoU: $0.meanIoU) })
            total.add(item, lossSum: sum, counts: counts)
            if let groupBy {
                for name in groupBy(record) {
                    if groups[name] == nil { order.append(name) }
                    groups[name, default: Tally()].add(item, lossSum: sum, counts: counts)
                }
            }
            try onItem(item)
        }
        var report = total.report
        if groupBy != nil { report.groups = order.compactMap { name in groups[name].map { .init(name: name, report: $0.report) } } }
        return report
    }

    /// Running sums behind a report.
    struct Tally {
        var examples = 0, tokens = 0, exact = 0, vqa = 0, boxExamples = 0
        var lossSum = 0.0
        var boxes = AnswerMetrics.BoxCounts()

        mutating func add(_ item: EvaluationItem, lossSum sum: Double, counts: AnswerMetrics.BoxCounts?) {
            examples += 1
            tokens += item.tokens
            lossSum += sum
            exact += item.exactMatch ? 1 : 0
            vqa += item.vqaMatch ? 1 : 0
            if let counts {
                boxes = boxes + counts
                boxExamples += 1
            }
        }

        var report: EvaluationReport {
            var r = EvaluationReport()
            r.examples = examples
            r.tokens = tokens
            r.loss = tokens > 0 ? lossSum / Double(tokens) : 0
            r.exactMatch = examples > 0 ? Double(exact) / Double(examples) : 0
            r.vqaAccuracy = examples > 0 ? Double(vqa) / Double(examples) : 0
            if boxExamples > 0 {
                r.detection = .init(examples: boxExamples, precision: boxes.precision, recall: boxes.recall, f1: boxes.f1, meanIoU: boxes.meanIoU)
            }
            return r
        }
    }
}
