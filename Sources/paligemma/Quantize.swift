import ArgumentParser
import Foundation
import PaliGemma

struct Quantize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an int8 (or 4-bit) copy of a checkpoint folder, which then loads without quantizing.",
        discussion: """
        The decoder's attention and MLP matrices and the output projection are stored as int8 \
        with one F32 scale per output channel (the same values --quantize int8 computes at \
        load); everything else, and the other files of the folder, are copied unchanged. With \
        --bits 4 they are stored as 4-bit values with one F16 scale per group of 32 (the same \
        values --quantize int4 computes at load). The output must not exist (or be an empty \
        folder); it appears only when complete.

        Example:
          paligemma quantize --model ~/models/paligemma-3b-mix-224 --output ~/models/paligemma-3b-mix-224-int8
          paligemma generate --model ~/models/paligemma-3b-mix-224-int8 --image cat.jpg --prompt "caption en"
        """
    )

    @Option(help: "Checkpoint folder (or a hub id already in the local cache). Default: the bundled shapes model.") var model: String?
    @Option(help: "Folder to write (must not exist, or be empty).") var output: String
    @Option(help: "Bits per weight: 8 (int8, one scale per output channel) or 4 (one scale per group of 32).") var bits = 8
    @OptionGroup var configKeys: ConfigKeyArguments

    func validate() throws {
        guard bits == 8 || bits == 4 else { throw ValidationError("--bits must be 8 or 4") }
    }

    func run() throws {
        writeCheckpointFolder(model: model, output: output, configKeys: configKeys, progressLabel: "quantizing") { checkpoint, destination, progress in
            try QuantizedCheckpoint.write(checkpoint, to: destination, bits: bits) { progress.update($0, $1) }.line
        }
    }
}

/// Opens `--model`, writes a folder made from it to `--output` (`write` returns the summary line)
/// with a progress line on a terminal, and prints the summary; errors end the process.
func writeCheckpointFolder(model: String?, output: String, configKeys: ConfigKeyArguments, progressLabel: String,
                           _ write: (Checkpoint, URL, PercentProgress) throws -> String) {
    do {
        let checkpoint = try Checkpoint(directory: try modelURL(model), configStrictness: configKeys.strictness)
        configKeys.warnAboutUnknownKeys(checkpoint.config)
        let progress = PercentProgress(progressLabel)
        let line = try write(checkpoint, expandedURL(output), progress)
        progress.finish()
        print(line)
    } catch {
        fail(error)
    }
}

/// "label N%" on standard error while a folder is written, when it is a terminal.
final class PercentProgress {
    private let label: String
    private let shown = isatty(STDERR_FILENO) != 0
    private var last = -1

    init(_ label: String) { self.label = label }

    func update(_ done: Int, _ total: Int) {
        let percent = done * 100 / max(total, 1)
        guard shown, percent != last else { return }
        last = percent
        FileHandle.standardError.write(Data("\r\(label) \(percent)%".utf8))
    }

    func finish() { if shown { FileHandle.standardError.write(Data("\r".utf8)) } }
}
