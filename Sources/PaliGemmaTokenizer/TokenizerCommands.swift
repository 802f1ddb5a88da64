// The logic of `paligemma tokenize` and `paligemma detokenize`, as functions the CLI calls.

import Foundation
import PaliGemmaJSON

public enum TokenizerCommands {
    /// `paligemma tokenize --model DIR [--bos] [--json] TEXT`: the ids of `text` separated by spaces, or with
    /// `json` the object `{"ids": [...], "pieces": [...]}`. BOS is added only when `addBOS` is set.
    public static func tokenize(modelDirectory: URL, text: String, addBOS: Bool = false, json: Bool = false) throws
        -> String
    {
        let tokenizer = try Tokenizer.load(directory: modelDirectory)
        return try tokenizeOutput(tokenizer, text: text, addBOS: addBOS, json: json)
    }

    /// As `tokenize(modelDirectory:...)` with an already loaded tokenizer.
    public static func tokenizeOutput(_ tokenizer: Tokenizer, text: String, addBOS: Bool, json: Bool) throws -> String {
        let ids = tokenizer.encode(text, addBOS: addBOS)
        guard json else { return ids.map(String.init).joined(separator: " ") }
        return try JSONOutput.string(Tokenization(ids: ids, pieces: tokenizer.pieces(for: ids)))
    }

    /// The JSON object of `tokenize --json`.
    struct Tokenization: Encodable {
        let ids: [Int32]
        let pieces: [String]
    }

    /// `paligemma detokenize --model DIR IDS...`: the text of the ids. Each argument may hold one id or
    /// several separated by commas / spaces (so `1,2,3`, `"1 2 3"` and `[1, 2, 3]` all work).
    public static func detokenize(modelDirectory: URL, ids arguments: [String]) throws -> String {
        let tokenizer = try Tokenizer.load(directory: modelDirectory)
        return try detokenizeOutput(tokenizer, ids: arguments)
    }

    /// As `detokenize(modelDirectory:...)` with an already loaded tokenizer.
    public static func detokenizeOutput(_ tokenizer: Tokenizer, ids arguments: [String]) throws -> String {
        let ids = try parseIDs(arguments)
        try tokenizer.validate(ids: ids)
        return tokenizer.decode(ids)
    }

    /// Parses id arguments; throws `TokenizerError.invalidIDText` for anything that is not an integer.
    public static func parseIDs(_ arguments: [String]) throws -> [Int32] {
        var ids: [Int32] = []
        for argument in arguments {
            let separators = CharacterSet(charactersIn: ", \t\n[]")
            for field in argument.components(separatedBy: separators) where !field.isEmpty {
                guard let id = Int32(field) else { throw TokenizerError.invalidIDText(field) }
                ids.append(id)
            }
        }
        return ids
    }

}
