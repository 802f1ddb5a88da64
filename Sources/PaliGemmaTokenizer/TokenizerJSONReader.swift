import PaliGemmaJSON
// Reads Hugging Face's `tokenizer.json` as written for Gemma / PaliGemma, and maps it onto the same
// SentencePiece-equivalent pipeline the `tokenizer.model` reader produces.
//
// Supported (what transformers writes for Gemma):
//   model        BPE with vocab, merges (["a", "b"] or "a b"), byte_fallback, unk_token, fuse_unk, ignore_merges
//   added_tokens without lstrip / rstrip / single_word
//   normalizer   null, Replace(" " -> "▁"), or a Sequence of those
//   pre_tokenizer null, or Split on " " after the normalizer has replaced every space (a no-op)
//   decoder      Sequence of Replace("▁" -> " "), ByteFallback, Fuse, Strip(" ", start, 0)
//   post_processor is ignored: BOS / EOS are added by `encode(_:addBOS:addEOS:)`.
// Anything else raises `TokenizerError.unsupported` naming the component.
//
// Piece types are recovered so that both files tokenize alike: "<0xNN>" pieces are bytes, the unk_token is
// UNKNOWN, special added tokens that are the BOS / EOS / PAD tokens are CONTROL (never matched in text, as in
// SentencePiece), and every other added token is USER_DEFINED (matched whole in text).

enum TokenizerJSONReader {
    /// Special-token names from `tokenizer_config.json` (when the folder has one).
    struct SpecialTokenNames {
        var bos = "<bos>"
        var eos = "<eos>"
        var pad = "<pad>"
    }

    static func read(_ data: [UInt8], file: String, names: SpecialTokenNames = SpecialTokenNames()) throws
        -> TokenizerModel
    {
        let root: JSONValue
        do {
            root = try JSONParser.parse(data)
        } catch let e as JSONParseError {
            throw TokenizerError.malformedJSON(file: file, expected: "valid JSON: \(e.message)")
        }
        func bad(_ what: String) -> TokenizerError { .malformedJSON(file: file, expected: what) }
        func unsupported(_ what: String) -> TokenizerError { .unsupported(file: file, component: what) }

        guard case .object = root else { throw bad("a JSON object at the top level") }
        guard let model = root["model"], case .object = model else { throw bad("an object 'model'") }
        let modelType = model["type"]?.stringValue ?? "(missing)"
        guard modelType == "BPE" else {
            throw unsupported("model.type \(modelType) (only BPE is implemented)")
        }
        if let dropout = model["dropout"], !dropout.isNull { throw unsupported("model.dropout") }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = model[key], !v.isNull, v.stringValue != "" { throw unsupported("model.\(key)") }
        }
        let byteFallback = try optionalBool(model, "byte_fallback", in: "model", file: file) ?? false
        let fuseUnknown = try optionalBool(model, "fuse_unk", in: "model", file: file) ?? false
        let ignoreMerges = try optionalBool(model, "ignore_merges", in: "model", file: file) ?? false

        // Vocabulary: ids must cover 0..<n exactly once (added tokens may extend it).
        guard let vocabValue = model["vocab"], case .object(let vocabMembers) = vocabValue else {
            throw bad("an object 'model.vocab' mapping pieces to ids")
        }
        var byID: [String?] = []
        byID.reserveCapacity(vocabMembers.count + 16)
        var addedCount = 0
        if case .array(let items)? = root["added_tokens"] { addedCount = items.count }
        // Ids must be dense, so none can reach the number of pieces listed.
        let idLimit = vocabMembers.count + addedCount
        func place(_ piece: String, _ idValue: JSONValue, _ context: String) throws {
            guard let id = idValue.intValue, id >= 0 else {
                throw bad("a non-negative integer id for \(context) '\(piece)', got \(idValue.typeName)")
            }
            guard id < idLimit else {
                throw TokenizerError.invalidVocabulary(
                    file: file, reason: "\(context) '\(piece)' has id \(id), but only \(idLimit) pieces are listed")
            }
            if id >= byID.count { byID.append(contentsOf: repeatElement(nil, count: id - byID.count + 1)) }
            if let existing = byID[id], existing != piece {
                throw TokenizerError.invalidVocabulary(
                    file: file, reason: "id \(id) is both '\(existing)' and '\(piece)'")
            }
            byID[id] = piece
        }
        for (piece, idValue) in vocabMembers { try place(piece, idValue, "vocab piece") }

        // Added tokens.
        var added: [(id: Int, content: String, special: Bool)] = []
        if let addedValue = root["added_tokens"], !addedValue.isNull {
            guard case .array(let items) = addedValue else { throw bad("an array 'added_tokens'") }
            for item in items {
                guard let content = item["content"]?.stringValue, let idValue = item["id"] else {
                    throw bad("'content' and 'id' in every added token")
                }
                for flag in ["lstrip", "rstrip", "single_word"] where item[flag]?.boolValue == true {
                    throw unsupported("added token '\(content)' with \(flag)=true")
                }
                try place(content, idValue, "added token")
                added.append((idValue.intValue ?? 0, content, item["special"]?.boolValue ?? false))
            }
        }
        var pieces: [String] = []
        pieces.reserveCapacity(byID.count)
        for (id, piece) in byID.enumerated() {
            guard let piece else { throw TokenizerError.invalidVocabulary(file: file, reason: "no piece has id \(id)") }
            guard !piece.isEmpty else { throw TokenizerError.invalidVocabulary(file: file, reason: "piece \(id) is empty") }
            pieces.append(piece)
        }
        guard !pieces.isEmpty else { throw TokenizerError.invalidVocabulary(file: file, reason: "the vocabulary is empty") }
        // Spelling -> id (first id wins), hashed over bytes: much faster than a [String: Int32] at 257k pieces.
        let pieceBytes = PieceBytes(pieces)
        let lookupTable = PieceTable(ids: (0..<Int32(pieces.count)).map { $0 }, pieces: pieceBytes)
        func idOf(_ piece: String) -> Int32? { lookupTable.lookup(piece, in: pieceBytes) }

        // Piece types.
        var types = [PieceType](repeating: .normal, count: pieces.count)
        if byteFallback {
            for (id, piece) in pieces.enumerated() where isBytePiece(piece) { types[id] = .byte }
        }
        let bosID = idOf(names.bos), eosID = idOf(names.eos), padID = idOf(names.pad)
        let controlIDs = Set([bosID, eosID, padID].compactMap { $0 })
        for token in added {
            types[token.id] = token.special && controlIDs.contains(Int32(token.id)) ? .control : .userDefined
        }
        var unkID: Int32?
        if let unkValue = model["unk_token"], !unkValue.isNull {
            guard let name = unkValue.stringValue, let id = idOf(name) else {
                throw bad("model.unk_token to name a vocabulary piece")
            }
            unkID = id
            types[Int(id)] = .unknown
        }

        // Merges.
        guard let mergesValue = model["merges"], case .array(let merges) = mergesValue else {
            throw bad("an array 'model.merges'")
        }
        guard merges.count < 1 << 24 else { throw unsupported("more than 2^24 merges") }
        var table = PairTable(capacityFor: merges.count)
        var scratch: [UInt8] = []
        try pieceBytes.bytes.withUnsafeBufferPointer { pb in
            try pieceBytes.starts.withUnsafeBufferPointer { ps in
                guard let pbBase = pb.baseAddress, let psBase = ps.baseAddress else { return }
                for (rank, merge) in merges.enumerated() {
                    let left: String, right: String
                    switch merge {
                    case .array(let pair) where pair.count == 2:
                        guard let l = pair[0].stringValue, let r = pair[1].stringValue else {
                            throw bad("merge \(rank) as two strings")
                        }
                        (left, right) = (l, r)
                    case .string(let s):
                        guard let space = s.firstIndex(of: " ") else { throw bad("merge \(rank) as 'left right'") }
                        (left, right) = (String(s[..<space]), String(s[s.index(after: space)...]))
                    default:
                        throw bad("merge \(rank) as [\"left\", \"right\"] or \"left right\"")
                    }
                    // Look up left, right and left+right from one buffer holding left+right.
                    scratch.removeAll(keepingCapacity: true)
                    scratch.append(contentsOf: left.utf8)
                    let split = scratch.count
                    scratch.append(contentsOf: right.utf8)
                    let ids: (Int32, Int32, Int32) = scratch.withUnsafeBufferPointer { k in
                        guard let base = k.baseAddress, split > 0, split < k.count else { return (-1, -1, -1) }
                        return (
                            lookupTable.lookup(base, split, pieceBytes: pbBase, starts: psBase),
                            lookupTable.lookup(base + split, k.count - split, pieceBytes: pbBase, starts: psBase),
                            lookupTable.lookup(base, k.count, pieceBytes: pbBase, starts: psBase)
                        )
                    }
                    let (l, r, m) = ids
                    guard l >= 0, r >= 0, m >= 0 else {
                        throw TokenizerError.invalidVocabulary(
                            file: file,
                            reason: "merge \(rank) ('\(left)', '\(right)') uses a piece missing from the vocabulary")
                    }
                    // SentencePiece never forms CONTROL, UNKNOWN or BYTE pieces by merging.
                    switch types[Int(m)] {
                    case .control, .unknown, .byte: continue
                    default: break
                    }
                    table.upsert(UInt64(UInt32(l)) << 32 | UInt64(UInt32(r)), UInt64(rank) << 32 | UInt64(UInt32(m)))
                }
            }
        }

        let escapes = try readNormalizer(root["normalizer"], file: file)
        try checkPreTokenizer(root["pre_tokenizer"], spacesEscaped: escapes, file: file)
        let stripsLeadingSpace = try readDecoder(root["decoder"], file: file)

        return TokenizerModel(
            source: .huggingFaceJSON,
            pieces: pieces, types: types, scores: [Float](repeating: 0, count: pieces.count),
            normalizer: NormalizerSettings(
                addDummyPrefix: false, removeExtraWhitespaces: false, escapeWhitespaces: escapes),
            byteFallback: byteFallback, splitDigits: false,
            unkID: unkID, bosID: bosID, eosID: eosID, padID: padID,
            unknownSurface: defaultUnknownSurface,
            mergeRule: .mergeRanks(table),
            ignoreMerges: ignoreMerges, fuseUnknown: fuseUnknown,
            decoderStripsLeadingSpace: stripsLeadingSpace)
    }

    /// "<0xNN>" with two upper-case hex digits.
    static func isBytePiece(_ piece: String) -> Bool {
        let u = Array(piece.utf8)
        guard u.count == 6, u[0] == 0x3c, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3e else { return false }
        func hex(_ c: UInt8) -> Bool { (0x30...0x39).contains(c) || (0x41...0x46).contains(c) }
        return hex(u[3]) && hex(u[4])
    }

    private static func optionalBool(_ object: JSONValue, _ key: String, in context: String, file: String) throws
        -> Bool?
    {
        guard let v = object[key], !v.isNull else { return nil }
        guard let b = v.boolValue else {
            throw TokenizerError.malformedJSON(file: file, expected: "\(context).\(key) to be a boolean")
        }
        return b
    }

    private static func components(_ value: JSONValue, listKey: String) -> [JSONValue] {
        if value["type"]?.stringValue == "Sequence", case .array(let items)? = value[listKey] { return items }
        return [value]
    }

    /// Returns whether spaces are replaced by "▁".
    private static func readNormalizer(_ value: JSONValue?, file: String) throws -> Bool {
        guard let value, !value.isNull else { return false }
        var escapes = false
        for step in components(value, listKey: "normalizers") {
            let type = step["type"]?.stringValue ?? "(missing type)"
            if type == "Replace", step["pattern"]?["String"]?.stringValue == " ", step["content"]?.stringValue == "\u{2581}" {
                escapes = true
                continue
            }
            throw TokenizerError.unsupported(file: file, component: "normalizer \(describe(step))")
        }
        return escapes
    }

    private static func checkPreTokenizer(_ value: JSONValue?, spacesEscaped: Bool, file: String) throws {
        guard let value, !value.isNull else { return }
        for step in components(value, listKey: "pretokenizers") {
            // Splitting on " " after every space became "▁" never splits anything.
            if step["type"]?.stringValue == "Split", step["pattern"]?["String"]?.stringValue == " ",
                step["invert"]?.boolValue != true, spacesEscaped
            {
                continue
            }
            throw TokenizerError.unsupported(file: file, component: "pre_tokenizer \(describe(step))")
        }
    }

    /// Returns whether the decoder strips one leading space (`Strip` with start >= 1).
    private static func readDecoder(_ value: JSONValue?, file: String) throws -> Bool {
        guard let value, !value.isNull else {
            throw TokenizerError.unsupported(file: file, component: "decoder null (expected Replace/ByteFallback/Fuse)")
        }
        var sawReplace = false
        var strips = false
        for step in components(value, listKey: "decoders") {
            switch step["type"]?.stringValue {
            case "Replace" where step["pattern"]?["String"]?.stringValue == "\u{2581}" && step["content"]?.stringValue == " ":
                sawReplace = true
            case "ByteFallback", "Fuse":
                break
            case "Strip" where step["content"]?.stringValue == " " && (step["stop"]?.intValue ?? 0) == 0
                && (0...1).contains(step["start"]?.intValue ?? -1):
                strips = step["start"]?.intValue == 1
            default:
                throw TokenizerError.unsupported(file: file, component: "decoder \(describe(step))")
            }
        }
        guard sawReplace else {
            throw TokenizerError.unsupported(file: file, component: "decoder without Replace(\"▁\" -> \" \")")
        }
        return strips
    }

    private static func describe(_ step: JSONValue) -> String {
        let type = step["type"]?.stringValue ?? "(missing type)"
        if let pattern = step["pattern"] {
            let p = pattern["String"]?.stringValue.map { "String \"\($0)\"" } ?? pattern["Regex"]?.stringValue.map { "Regex \"\($0)\"" }
            if let p { return "\(type)(\(p.prefix(60)))" }
        }
        return type
    }
}
