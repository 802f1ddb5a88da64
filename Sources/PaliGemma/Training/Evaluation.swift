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

    enum CodingKeys: String, CodingKey {
        case examples, loss, tokens, exactMatch = "exact_match", vqaAccuracy = "vqa_accuracy", detection
    }
}

public enum Evaluation {
    /// Teacher-forced suffix loss of one example: (sum of cross-entropies, scored positions).
    public static func loss(_ example: TrainingExample, model: PaliGemmaModel) throws -> (Double, Int) {
        let features = try example.ids.contains(model.config.imageTokenIndex) ? model.imageFeatures(pixels: example.pixels) : nil
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
    /// each example's result as it completes.
    public static func run(pipeline: PaliGemmaPipeline, records: [TrainingRecord], maxTokens: Int,
                           onItem: (EvaluationItem) throws -> Void = { _ in }) throws -> EvaluationReport {
        var report = EvaluationReport()
        var lossSum = 0.0, exact = 0, vqa = 0
        var boxes = AnswerMetrics.BoxCounts(), boxExamples = 0
        for record in records {
            let example = try TrainingData.example(record, pipeline: pipeline)
            let (sum, n) = try loss(example, model: pipeline.model)
            let answer = try pipeline.generate(pixels: example.pixels, prompt: record.prefix,
                                               options: GenerationOptions(maxNewTokens: maxTokens)).text
            let counts: AnswerMetrics.BoxCounts? = AnswerMetrics.hasBoxes(record.suffix) ? AnswerMetrics.boxes(answer, record.suffix) : nil
            let item = EvaluationItem(line: record.line, image: record.image.path, prefix: record.prefix, reference: record.suffix,
                                      answer: answer, loss: n > 0 ? sum / Double(n) : 0, tokens: n,
                                      exactMatch: AnswerMetrics.exactMatch(answer, record.suffix),
                                      vqaMatch: AnswerMetrics.vqaMatch(answer, record.suffix),
                                      boxes: counts.map { .init(predicted: $0.predicted, reference: $0.reference, matched: $0.matched, meanIoU: $0.meanIoU) })
            lossSum += sum
            report.tokens += n
            exact += item.exactMatch ? 1 : 0
            vqa += item.vqaMatch ? 1 : 0
            if let counts {
                boxes = boxes + counts
                boxExamples += 1
            }
            report.examples += 1
            try onItem(item)
        }
        report.loss = report.tokens > 0 ? lossSum / Double(report.tokens) : 0
        report.exactMatch = report.examples > 0 ? Double(exact) / Double(report.examples) : 0
        report.vqaAccuracy = report.examples > 0 ? Double(vqa) / Double(report.examples) : 0
        if boxExamples > 0 {
            report.detection = .init(examples: boxExamples, precision: boxes.precision, recall: boxes.recall, f1: boxes.f1, meanIoU: boxes.meanIoU)
        }
        return report
    }
}
