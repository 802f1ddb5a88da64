// Errors raised while reading tokenizer files or checking ids.

import Foundation

/// A problem with a tokenizer file or with ids handed to the tokenizer.
///
/// Every case names the file (or the folder) involved, so a message can be shown to a user as is.
public enum TokenizerError: Error, Equatable, CustomStringConvertible, Sendable {
    /// The folder holds neither `tokenizer.model` nor `tokenizer.json`.
    case noTokenizerFile(directory: String)
    /// The file could not be read from disk.
    case unreadable(file: String, reason: String)
    /// `tokenizer.model` is not a valid SentencePiece ModelProto: cut short or corrupt.
    case malformedModel(file: String, offset: Int, expected: String)
    /// `tokenizer.json` is not valid JSON, or lacks / mistypes a field we need.
    case malformedJSON(file: String, expected: String)
    /// The file is valid but uses a component this tokenizer does not implement.
    case unsupported(file: String, component: String)
    /// The vocabulary is inconsistent (duplicate piece, id gap, merge of unknown pieces, ...).
    case invalidVocabulary(file: String, reason: String)
    /// An id outside `0..<vocabularySize` was given to `decode` / `pieces(for:)`.
    case idOutOfRange(id: Int, vocabularySize: Int)
    /// A command-line id argument that is not an integer.
    case invalidIDText(String)

    public var description: String {
        switch self {
        case .noTokenizerFile(let directory):
            return "\(directory): no tokenizer.model or tokenizer.json in this folder"
        case .unreadable(let file, let reason):
            return "\(file): cannot read file (\(reason))"
        case .malformedModel(let file, let offset, let expected):
            return "\(file): not a valid SentencePiece model at byte \(offset): expected \(expected)"
        case .malformedJSON(let file, let expected):
            return "\(file): invalid tokenizer.json: expected \(expected)"
        case .unsupported(let file, let component):
            return "\(file): unsupported tokenizer component: \(component)"
        case .invalidVocabulary(let file, let reason):
            return "\(file): invalid vocabulary: \(reason)"
        case .idOutOfRange(let id, let vocabularySize):
            return "token id \(id) is out of range (vocabulary has \(vocabularySize) pieces)"
        case .invalidIDText(let text):
            return "'\(text)' is not a token id (expected an integer)"
        }
    }
}
