import ArgumentParser
import Foundation
import PaliGemma

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a checkpoint folder with a LoRA adapter merged into its weights.",
        discussion: """
        Each adapted matrix becomes W + s·B·A (s = lora_alpha / r, or / sqrt(r) with rsLoRA), \
        rounded once to W's stored dtype; every other tensor, the file layout and the folder's \
        other files (config, tokenizer, preprocessor config) are copied unchanged, so this \
        runtime and transformers load the result like the base. A quantized base (int8 or \
        4-bit) is refused: merge into the float folder, then quantize. The output must not \
        exist (or be an empty folder); it appears only when complete.

        Example:
          paligemma merge --model ~/models/paligemma-3b-pt-224 --adapter my-lora --output ~/models/my-model
          paligemma caption --model ~/models/my-model --image cat.jpg
        """
    )

    @Option(help: "Checkpoint folder (or a hub id already in the local cache). Default: the bundled shapes model.") var model: String?
    @Option(help: "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors).") var adapter: String
    @Option(help: "Folder to write (must not exist, or be empty).") var output: String
    @OptionGroup var configKeys: ConfigKeyArguments

    func run() throws {
        writeCheckpointFolder(model: model, output: output, configKeys: configKeys, progressLabel: "merging") { checkpoint, destination, progress in
            let lora = try LoRAAdapter(directory: try modelURL(adapter))
            return try MergedCheckpoint.write(checkpoint, adapter: lora, to: destination) { progress.update($0, $1) }.line
        }
    }
}
