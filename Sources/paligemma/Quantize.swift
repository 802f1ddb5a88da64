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

    @Option(help: "Checkpoint folder (or a hub id already in the local cache).") var model: String
    @Option(help: "Folder to write (must not exist, or be empty).") var output: String
    @Option(help: "Bits per weight: 8 (int8, one scale per output channel) or 4 (one scale per group of 32).") var bits = 8
    @OptionGroup var configKeys: ConfigKeyArguments

    func validate() throws {
        guard bits == 8 || bits == 4 else { throw ValidationError("--bits must be 8 or 4") }
    }

    func run() throws {
        do {
            let checkpoint = try Checkpoint(directory: try modelURL(model), configStrictness: configKeys.strictness)
            configKeys.warnAboutUnknownKeys(checkpoint.config)
            let destination = URL(fileURLWithPath: (output as NSString).expandingTildeInPath)
            let showProgress = isatty(STDERR_FILENO) != 0
            var last = -1
            let summary = try QuantizedCheckpoint.write(checkpoint, to: destination, bits: bits) { done, total in
                let percent = done * 100 / max(total, 1)
                if showProgress && percent != last {
                    last = percent
                    FileHandle.standardError.write(Data("\rquantizing \(percent)%".utf8))
                }
            }
            if showProgress { FileHandle.standardError.write(Data("\r".utf8)) }
            print(summary.line)
        } catch {
            fail(error)
        }
    }
}
