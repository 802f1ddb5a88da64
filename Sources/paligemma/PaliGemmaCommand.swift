import ArgumentParser
import Foundation
import PaliGemma
import PaliGemmaVideo

@main
struct PaliGemmaCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "paligemma",
        abstract: "Run Google's PaliGemma vision-language models natively.",
        discussion: """
        Examples:
          paligemma caption --model ~/models/paligemma-3b-mix-224 --image cat.jpg
          paligemma generate --model ~/models/paligemma-3b-mix-224 --image cat.jpg --prompt "answer en what is this?"
          paligemma inspect --model ~/models/paligemma-3b-mix-224
          paligemma serve --model ~/models/paligemma-3b-mix-224
        """,
        subcommands: [Generate.self, Caption.self, OCR.self, Answer.self, Detect.self, Segment.self, Parse.self,
                      Inspect.self, Download.self, Quantize.self, Merge.self, Finetune.self, Evaluate.self,
                      Tokenize.self, Detokenize.self, Serve.self, Bench.self, Shapes.self, RandomCheckpointCommand.self]
    )

    /// argument-parser's own entry point; commands that run to an end ask the C library to keep
    /// freed activations for reuse (`Kernels.keepFreedMemory`, process-wide). `serve` does not:
    /// a long-running server hands memory back (with it kept, the soak run's resident memory
    /// grew 7.9% over 1,000 requests against 4.4%, beyond its 5% bound).
    static func main() async {
        do {
            var command = try parseAsRoot()
            if !(command is Serve) { Kernels.keepFreedMemory() }
            if var asyncCommand = command as? AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}

/// Exit codes: 64 usage (swift-argument-parser's), 65 bad input data, 66 model/checkpoint problems.
enum ExitStatus {
    static let input: Int32 = 65
    static let model: Int32 = 66
}

/// A path the user gave (`~` expanded) as a file URL.
func expandedURL(_ path: String) -> URL { URL(fileURLWithPath: expandedPath(path)) }

/// A path the user gave with `~` expanded.
func expandedPath(_ path: String) -> String { (path as NSString).expandingTildeInPath }

/// Prints one clear line to stderr and exits with the code for the kind of error.
func fail(_ error: Error) -> Never {
    // One line, whatever the error's own layout.
    let message = ((error as? LocalizedError)?.errorDescription ?? "\(error)")
        .split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: " ")
    FileHandle.standardError.write(Data("paligemma: error: \(message)\n".utf8))
    let code: Int32
    switch error {
    case PaliGemmaError.input: code = ExitStatus.input
    case TokenizerError.idOutOfRange, TokenizerError.invalidIDText: code = ExitStatus.input
    case is ImageError, is VideoError: code = ExitStatus.input
    default: code = ExitStatus.model
    }
    exit(code)
}
