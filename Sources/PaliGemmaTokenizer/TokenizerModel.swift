// The file-format-independent description of a tokenizer, as produced by the two readers.

/// SentencePiece piece types (`ModelProto.SentencePiece.Type`).
public enum PieceType: UInt8, Sendable {
    case normal = 1
    case unknown = 2
    case control = 3
    case userDefined = 4
    case unused = 5
    case byte = 6
}

/// Which file a tokenizer was read from.
public enum TokenizerSource: String, Sendable {
    case sentencePieceModel = "tokenizer.model"
    case huggingFaceJSON = "tokenizer.json"
}

/// SentencePiece's normalizer settings (`NormalizerSpec`), for the "identity" rule (no character map).
struct NormalizerSettings: Equatable, Sendable {
    /// Prepend "▁" to the text.
    var addDummyPrefix: Bool
    /// Drop leading and trailing spaces and collapse runs of spaces.
    var removeExtraWhitespaces: Bool
    /// Replace " " with "▁".
    var escapeWhitespaces: Bool
}

/// How adjacent symbols are merged.
enum MergeRule: Sendable {
    /// SentencePiece: any adjacent pair whose concatenation is a NORMAL, USER_DEFINED or UNUSED piece may merge;
    /// the pair whose piece has the highest score merges first (ties: leftmost).
    case pieceScores
    /// Hugging Face BPE: only listed merges; lowest rank first (ties: leftmost).
    /// Keys are `left << 32 | right` ids; values are `rank << 32 | merged id`.
    case mergeRanks(PairTable)
}

/// Everything the encoder and decoder need, filled in by a reader.
struct TokenizerModel: Sendable {
    var source: TokenizerSource
    var pieces: [String]
    var types: [PieceType]
    var scores: [Float]
    var normalizer: NormalizerSettings
    var byteFallback: Bool
    var splitDigits: Bool
    var unkID: Int32?
    var bosID: Int32?
    var eosID: Int32?
    var padID: Int32?
    /// What an unknown piece decodes to (SentencePiece's `unk_surface`, " ⁇ " by default).
    var unknownSurface: String
    var mergeRule: MergeRule
    /// Hugging Face `ignore_merges`: a segment that is itself a piece is emitted whole.
    var ignoreMerges: Bool = false
    /// Hugging Face `fuse_unk`: consecutive unknown symbols become one `<unk>` (only without byte fallback).
    var fuseUnknown: Bool = false
    /// Hugging Face decoder `Strip(" ", 1, 0)`: drop the first leading space when decoding.
    var decoderStripsLeadingSpace: Bool = false
}

/// SentencePiece's default surface for `<unk>` when decoding: " ⁇ ".
let defaultUnknownSurface = " \u{2047} "
