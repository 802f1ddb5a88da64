import ArgumentParser
import Foundation
import PaliGemma

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Summarise a checkpoint folder: config, tensors, parameters, dtypes, bytes.",
        discussion: """
        Loads the folder strictly (every tensor must match the model config.json describes) and
        prints what it holds. Nothing is computed; weights are memory-mapped.

        Example:
          paligemma inspect --model ~/models/paligemma2-3b-pt-224
        """
    )

    @Option(name: .long, help: "Checkpoint folder (config.json + model.safetensors or shards). Default: the bundled shapes model.")
    var model: String?

    @Flag(name: .long, help: "Print one JSON object instead of text.")
    var json = false

    @OptionGroup var configKeys: ConfigKeyArguments

    func run() throws {
        do {
            let url = try modelURL(model)
            let start = Date()
            let checkpoint = try Checkpoint(directory: url, configStrictness: configKeys.strictness)
            configKeys.warnAboutUnknownKeys(checkpoint.config)
            _ = try PaliGemmaModel(checkpoint: checkpoint)
            let loadSeconds = Date().timeIntervalSince(start)
            let summary = try CheckpointSummary(checkpoint: checkpoint)
            if json {
                print(try summary.json(loadSeconds: loadSeconds))
            } else {
                print(summary.text(loadSeconds: loadSeconds))
            }
        } catch {
            fail(error)
        }
    }
}
