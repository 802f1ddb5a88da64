// PaliGemma's tokenizer: SentencePiece BPE with byte fallback, read from `tokenizer.model` or `tokenizer.json`.
//
// Pipeline (one file per stage):
//   SentencePieceModelReader / TokenizerJSONReader -> TokenizerModel
//   Normalizer (dummy prefix, spaces, "▁") -> BPEEncoder (user-defined pieces, merges, byte fallback)
//   DecodeState / StreamingDecoder (ids -> text)

import Foundation
import PaliGemmaJSON

/// A loaded tokenizer. Immutable and cheap to copy; safe to share between threads.
public struct Tokenizer: Sendable {
    final class Core: Sendable {
        let model: TokenizerModel
        let pieceBytes: PieceBytes
        let allPieces: PieceTable
        let normalizer: Normalizer
        let encoder: BPEEncoder
        /// User-defined, control and unknown pieces: what transformers matches whole in text.
        let addedTokenMatcher: SymbolMatcher
        let decoderTable: DecoderTable

        init(_ model: TokenizerModel, file: String) throws {
            self.model = model
            let pieceBytes = PieceBytes(model.pieces)
            self.pieceBytes = pieceBytes
            var reserved: [Int32] = []
            var mergeable: [Int32] = []
            var userDefined: [Int32] = []
            for (i, type) in model.types.enumerated() {
                switch type {
                case .control, .unknown, .byte: reserved.append(Int32(i))
                case .normal, .unused: mergeable.append(Int32(i))
                case .userDefined:
                    mergeable.append(Int32(i))
                    userDefined.append(Int32(i))
                }
            }
            let allPieces = PieceTable(ids: reserved + mergeable, pieces: pieceBytes)
            // SentencePiece refuses a model that defines a piece twice.
            if model.source == .sentencePieceModel, let duplicate = allPieces.firstDuplicate {
                throw TokenizerError.invalidVocabulary(
                    file: file, reason: "piece '\(model.pieces[Int(duplicate)])' is defined twice")
            }
            self.allPieces = allPieces
            let matcher = SymbolMatcher(ids: userDefined, pieces: pieceBytes)
            let special = reserved.filter { model.types[Int($0)] != .byte }
            addedTokenMatcher = SymbolMatcher(ids: userDefined + special, pieces: pieceBytes)
            normalizer = Normalizer(settings: model.normalizer, matcher: matcher)
            var byteIDs = [Int32](repeating: -1, count: 256)
            for id in reserved where model.types[Int(id)] == .byte {
                if let v = DecoderTable.parseBytePiece(model.pieces[Int(id)]), byteIDs[Int(v)] < 0 {
                    byteIDs[Int(v)] = id
                }
            }
            encoder = BPEEncoder(
                pieces: pieceBytes, types: model.types, scores: model.scores,
                allPieces: allPieces,
                mergeable: PieceTable(ids: mergeable, pieces: pieceBytes),
                rule: model.mergeRule, matcher: matcher, byteIDs: byteIDs, unkID: model.unkID,
                byteFallback: model.byteFallback, ignoreMerges: model.ignoreMerges,
                fuseUnknown: model.fuseUnknown && !model.byteFallback,
                hasUnused: model.types.contains(.unused))
            decoderTable = DecoderTable(model: model, raw: pieceBytes)
        }
    }

    let core: Core

    // MARK: Loading

    /// Loads the tokenizer in a checkpoint folder: `tokenizer.model` when present (SentencePiece, what the
    /// model was trained with), otherwise `tokenizer.json`.
    public static func load(directory: URL) throws -> Tokenizer {
        let fm = FileManager.default
        let model = directory.appendingPathComponent("tokenizer.model")
        if fm.fileExists(atPath: model.path) { return try Tokenizer(sentencePieceModel: model) }
        let json = directory.appendingPathComponent("tokenizer.json")
        if fm.fileExists(atPath: json.path) { return try Tokenizer(tokenizerJSON: json) }
        throw TokenizerError.noTokenizerFile(directory: directory.path)
    }

    /// Reads a SentencePiece `tokenizer.model`.
    public init(sentencePieceModel url: URL) throws {
        let bytes = try Tokenizer.readFile(url)
        try self.init(sentencePieceModelBytes: bytes, name: url.path)
    }

    /// Parses the bytes of a SentencePiece `tokenizer.model`; `name` labels errors.
    public init(sentencePieceModelBytes bytes: [UInt8], name: String = "tokenizer.model") throws {
        core = try Core(SentencePieceModelReader.read(bytes, file: name), file: name)
    }

    /// Reads a Hugging Face `tokenizer.json`. Special-token names (bos/eos/pad) come from a
    /// `tokenizer_config.json` beside it when there is one, else Gemma's `<bos>`, `<eos>`, `<pad>`.
    public init(tokenizerJSON url: URL) throws {
        let bytes = try Tokenizer.readFile(url)
        let config = url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
        var names = TokenizerJSONReader.SpecialTokenNames()
        if FileManager.default.fileExists(atPath: config.path) {
            names = try Tokenizer.specialTokenNames(config: try Tokenizer.readFile(config), file: config.path)
        }
        core = try Core(TokenizerJSONReader.read(bytes, file: url.path, names: names), file: url.path)
    }

    /// Parses the bytes of a Hugging Face `tokenizer.json`; `name` labels errors.
    public init(tokenizerJSONBytes bytes: [UInt8], name: String = "tokenizer.json") throws {
        core = try Core(TokenizerJSONReader.read(bytes, file: name), file: name)
    }

    private static func readFile(_ url: URL) throws -> [UInt8] {
        do {
            return [UInt8](try Data(contentsOf: url, options: .mappedIfSafe))
        } catch {
            throw TokenizerError.unreadable(file: url.path, reason: error.localizedDescription)
        }
    }

    private static func specialTokenNames(config: [UInt8], file: String) throws -> TokenizerJSONReader.SpecialTokenNames {
        let root: JSONValue
        do {
            root = try JSONParser.parse(config)
        } catch let e as JSONParseError {
            throw TokenizerError.malformedJSON(file: file, expected: "valid JSON: \(e.message)")
        }
        var names = TokenizerJSONReader.SpecialTokenNames()
        func name(_ key: String) -> String? {
            guard let v = root[key] else { return nil }
            return v.stringValue ?? v["content"]?.stringValue
        }
        if let n = name("bos_token") { names.bos = n }
        if let n = name("eos_token") { names.eos = n }
        if let n = name("pad_token") { names.pad = n }
        return names
    }

    // MARK: Vocabulary

    /// Which file the tokenizer was read from.
    public var source: TokenizerSource { core.model.source }
    /// Number of pieces (ids are `0..<vocabularySize`).
    public var vocabularySize: Int { core.model.pieces.count }
    public var bosID: Int32? { core.model.bosID }
    public var eosID: Int32? { core.model.eosID }
    public var padID: Int32? { core.model.padID }
    public var unkID: Int32? { core.model.unkID }

    /// The id of a piece spelled exactly `piece` (e.g. "<image>", "<loc0042>", "▁the"), if any.
    public func id(of piece: String) -> Int32? {
        core.allPieces.lookup(piece, in: core.pieceBytes)
    }

    /// The piece for `id`, or nil when `id` is out of range.
    public func piece(for id: Int32) -> String? {
        guard id >= 0, Int(id) < core.model.pieces.count else { return nil }
        return core.model.pieces[Int(id)]
    }

    /// The pieces for `ids`; an out-of-range id gives "" (check with `validate(ids:)` first).
    public func pieces(for ids: [Int32]) -> [String] {
        ids.map { piece(for: $0) ?? "" }
    }

    /// The SentencePiece type of `id`, or nil when out of range.
    public func pieceType(of id: Int32) -> PieceType? {
        guard id >= 0, Int(id) < core.model.types.count else { return nil }
        return core.model.types[Int(id)]
    }

    /// Throws `TokenizerError.idOutOfRange` for the first id outside the vocabulary.
    public func validate(ids: [Int32]) throws {
        for id in ids where id < 0 || Int(id) >= vocabularySize {
            throw TokenizerError.idOutOfRange(id: Int(id), vocabularySize: vocabularySize)
        }
    }

    // MARK: Encoding and decoding

    /// Token ids for `text`, as SentencePiece's `encode` gives them, optionally with BOS first / EOS last.
    ///
    /// User-defined pieces (`<image>`, `<locNNNN>`, `<segNNN>`, ...) are matched whole inside the text.
    /// Control pieces typed as text (`<bos>`, `<eos>`, `<pad>`) and `<unk>` are spelled with ordinary
    /// pieces, as SentencePiece does; use `addBOS` / `addEOS` for the real ids. With
    /// `matchControlPieces` they are matched whole too and give their own ids, as transformers'
    /// tokenizer reads text (it matches every added token, special ones included): "a<eos>" is
    /// `encode("a") + [eos]` then, where SentencePiece spells "<eos>" with "<", "e", ... pieces.
    public func encode(_ text: String, addBOS: Bool = false, addEOS: Bool = false,
                       matchControlPieces: Bool = false) -> [Int32] {
        var ids: [Int32] = []
        ids.reserveCapacity(text.utf8.count / 3 + 2)
        if addBOS, let bos = bosID { ids.append(bos) }
        let normalized = core.normalizer.normalize(Array(text.utf8))
        core.encoder.encode(normalized: normalized, into: &ids,
                            matcher: matchControlPieces ? core.addedTokenMatcher : nil)
        if addEOS, let eos = eosID { ids.append(eos) }
        return ids
    }

    /// Text for `ids`. With `skipSpecial` (the default) this is exactly SentencePiece's `decode`: control
    /// pieces are invisible and `<unk>` reads " ⁇ "; otherwise they are written as their piece text.
    /// Ids outside the vocabulary are ignored (check with `validate(ids:)` first).
    public func decode(_ ids: [Int32], skipSpecial: Bool = true) -> String {
        var state = DecodeState(skipSpecial: skipSpecial)
        var out: [UInt8] = []
        out.reserveCapacity(ids.count * 4)
        for id in ids { state.push(id, table: core.decoderTable, into: &out) }
        state.finish(into: &out)
        return String(decoding: out, as: UTF8.self)
    }

    /// A decoder for streaming generation; see `StreamingDecoder`.
    public func streamingDecoder(skipSpecial: Bool = true) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecial: skipSpecial)
    }
}

/// Turns ids into text one at a time, never emitting part of a UTF-8 sequence: bytes of a character split
/// over several `<0xNN>` pieces are held back until the character is complete. The concatenation of all
/// `push` results and `finish()` equals `Tokenizer.decode` of the same ids.
public struct StreamingDecoder: Sendable {
    private let tokenizer: Tokenizer
    private var state: DecodeState
    private var buffer: [UInt8] = []

    init(tokenizer: Tokenizer, skipSpecial: Bool) {
        self.tokenizer = tokenizer
        self.state = DecodeState(skipSpecial: skipSpecial)
    }

    /// The text that `id` completes (possibly empty).
    public mutating func push(_ id: Int32) -> String {
        buffer.removeAll(keepingCapacity: true)
        state.push(id, table: tokenizer.core.decoderTable, into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }

    /// Text still held back at the end of the stream (an unfinished sequence becomes U+FFFD per byte).
    public mutating func finish() -> String {
        buffer.removeAll(keepingCapacity: true)
        state.finish(into: &buffer)
        return String(decoding: buffer, as: UTF8.self)
    }
}
