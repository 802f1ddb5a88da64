import ArgumentParser
import Foundation
import PaliGemma

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the token ids of a text (no <bos> unless --bos).",
        discussion: """
        Reads tokenizer.model (preferred) or tokenizer.json from the model folder.

        Examples:
          paligemma tokenize --model ~/models/paligemma-3b-mix-224 "caption en"
          paligemma tokenize --model ~/models/paligemma-3b-mix-224 --json "detect cat ; dog"
        """
    )

    @Option(help: "Model folder holding tokenizer.model or tokenizer.json. Default: the bundled shapes model.") var model: String?
    @Flag(help: "Put <bos> first.") var bos = false
    @Flag(help: "Print {\"ids\": [...], \"pieces\": [...]}.") var json = false
    @Argument(help: "The text.") var text: String

    func run() throws {
        do {
            print(try TokenizerCommands.tokenize(modelDirectory: try modelURL(model), text: text, addBOS: bos, json: json))
        } catch {
            fail(error)
        }
    }
}

struct Detokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the text of token ids (special tokens skipped).",
        discussion: """
        Ids may be separated by spaces or commas, or given as a JSON array.

        Example:
          paligemma detokenize --model ~/models/paligemma-3b-mix-224 2 106 9 1
        """
    )

    @Option(help: "Model folder holding tokenizer.model or tokenizer.json. Default: the bundled shapes model.") var model: String?
    @Argument(help: "Token ids.") var ids: [String]

    func run() throws {
        do {
            print(try TokenizerCommands.detokenize(modelDirectory: try modelURL(model), ids: ids))
        } catch {
            fail(error)
        }
    }
}

/// A --model argument as a folder: an existing local folder, or a hub id (ORG/NAME) already in
/// the local Hugging Face cache (see docs/HUB.md). Never touches the network.
