import ArgumentParser
import Foundation
import PaliGemma
import PaliGemmaJSON

struct Evaluate: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate a model (and adapter) on examples in the fine-tuning format: suffix loss and task metrics.",
        discussion: """
        For each line ({"image", "prefix" or a task, "suffix"}): the teacher-forced loss of the suffix
        and <eos>, and the greedy answer to the prefix, scored against the suffix: exact match and
        VQA-normalised accuracy for text; for answers with boxes, precision / recall / F1 at IoU 0.5
        (same label) and the mean IoU of matched boxes.

        Example:
          paligemma eval --model M --adapter runs/lora --data eval.jsonl --output preds.jsonl
        """)

    @Option(help: "Checkpoint folder (or a hub id already in the local cache). Default: the bundled shapes model.") var model: String?
    @Option(help: "PEFT LoRA adapter folder applied to the model.") var adapter: String?
    @Option(help: "Examples (JSON Lines).") var data: String
    @Option(help: "Write one JSON line per example (answer, reference, loss, metrics) here.") var output: String?
    @Option(name: .customLong("max-tokens"), help: "Most tokens per greedy answer.") var maxTokens = 64
    @Flag(help: "Print one JSON object instead of a summary.") var json = false
    @Option(name: .customLong("group-by"), help: "Also report the metrics per group: prefix (each distinct prompt) or shapes (the shapes world's caption, count, color and detect questions, and the captions by number of objects).")
    var groupBy: String?
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: precisionHelp) var precision: Precision?
    @OptionGroup var configKeys: ConfigKeyArguments

    func run() throws {
        enableVideoLines()
        do {
            if let threads { Kernels.threads = threads }
            Kernels.useFrontEndPrecision(precision)
            let pipeline = try PaliGemmaPipeline(directory: try modelURL(model), configStrictness: configKeys.strictness,
                                                 adapter: try adapter.map(modelURL))
            configKeys.warnAboutUnknownKeys(pipeline.model.config)
            let records = try TrainingData.read(jsonl: expandedURL(data))
            var sink: JSONLinesFile?
            if let output { sink = try JSONLinesFile(path: expandedPath(output), append: false) }
            let groups = try grouping()
            var report = try Evaluation.run(pipeline: pipeline, records: records, maxTokens: maxTokens,
                                            groupBy: groups?.names) { item in
                try sink?.write(item)
            }
            if let rank = groups?.rank { report.groups?.sort { rank($0.name) < rank($1.name) } }
            if json {
                print(try JSONOutput.string(report))
            } else {
                printSummary(report, indent: "")
                for group in report.groups ?? [] {
                    print("\(group.name):")
                    printSummary(group.report, indent: "  ")
                }
            }
        } catch {
            fail(error)
        }
    }

    /// The groups each record counts in, and how to order the groups in the report (nil: by
    /// first appearance).
    func grouping() throws -> (names: (TrainingRecord) -> [String], rank: ((String) -> Int)?)? {
        switch groupBy {
        case nil: return nil
        case "prefix": return ({ [$0.prefix] }, nil)
        case "shapes": return ({ ShapesTask.evaluationGroups(prefix: $0.prefix, suffix: $0.suffix) }, ShapesTask.evaluationGroupRank)
        case let other?: throw PaliGemmaError.input("--group-by must be prefix or shapes, got '\(other)'")
        }
    }

    func printSummary(_ report: EvaluationReport, indent: String) {
        print(indent + String(format: "%d examples: loss %.4f over %d tokens, exact match %.1f%%, VQA accuracy %.1f%%",
                              report.examples, report.loss, report.tokens, 100 * report.exactMatch, 100 * report.vqaAccuracy))
        if let d = report.detection {
            print(indent + String(format: "boxes (%d examples): precision %.3f, recall %.3f, F1 %.3f at IoU 0.5, mean IoU %.3f",
                                  d.examples, d.precision, d.recall, d.f1, d.meanIoU))
        }
    }
}
