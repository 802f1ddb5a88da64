// Reads SentencePiece's `tokenizer.model` (a serialized `sentencepiece.ModelProto`).
//
// Only the fields the encoder and decoder need are decoded; all others are skipped by wire type.
// Field numbers follow sentencepiece_model.proto:
//   ModelProto      1 pieces (repeated SentencePiece)  2 trainer_spec  3 normalizer_spec
//   SentencePiece   1 piece  2 score (float)  3 type (enum, default NORMAL)
//   TrainerSpec     3 model_type (UNIGRAM=1 default, BPE=2, WORD=3, CHAR=4)  24 treat_whitespace_as_suffix
//                   25 split_digits  35 byte_fallback  40 unk_id (0)  41 bos_id (1)  42 eos_id (2)
//                   43 pad_id (-1)  44 unk_surface
//   NormalizerSpec  1 name  2 precompiled_charsmap  3 add_dummy_prefix (true)
//                   4 remove_extra_whitespaces (true)  5 escape_whitespaces (true)

import Foundation

enum SentencePieceModelReader {
    /// Parses the bytes of a `tokenizer.model`; `file` names it in errors.
    static func read(_ data: [UInt8], file: String) throws -> TokenizerModel {
        do {
            return try data.withUnsafeBufferPointer { buffer in
                try parse(buffer, file: file)
            }
        } catch let error as ProtobufError {
            throw TokenizerError.malformedModel(file: file, offset: error.offset, expected: error.expected)
        }
    }

    private struct Trainer {
        var modelType: Int32 = 1
        var treatWhitespaceAsSuffix = false
        var splitDigits = false
        var byteFallback = false
        var unkID: Int32 = 0
        var bosID: Int32 = 1
        var eosID: Int32 = 2
        var padID: Int32 = -1
        var unkSurface = defaultUnknownSurface
    }

    private struct Normalizer {
        var name = ""
        var charsmapBytes = 0
        var addDummyPrefix = true
        var removeExtraWhitespaces = true
        var escapeWhitespaces = true
    }

    private static func parse(_ buffer: UnsafeBufferPointer<UInt8>, file: String) throws -> TokenizerModel {
        var reader = ProtobufReader(buffer, range: 0..<buffer.count)
        var pieces: [String] = []
        var types: [PieceType] = []
        var scores: [Float] = []
        var trainer = Trainer()
        var normalizer = Normalizer()
        while !reader.isAtEnd {
            let (field, wire) = try reader.readKey()
            switch field {
            case 1:
                try reader.expect(wire, .lengthDelimited, field: "ModelProto.pieces")
                let range = try reader.readLengthDelimited()
                let piece = try parsePiece(buffer, range: range)
                pieces.append(piece.text)
                types.append(piece.type)
                scores.append(piece.score)
            case 2:
                try reader.expect(wire, .lengthDelimited, field: "ModelProto.trainer_spec")
                trainer = try parseTrainer(buffer, range: try reader.readLengthDelimited())
            case 3:
                try reader.expect(wire, .lengthDelimited, field: "ModelProto.normalizer_spec")
                normalizer = try parseNormalizer(buffer, range: try reader.readLengthDelimited())
            default:
                try reader.skip(wire, field: field)
            }
        }
        guard !pieces.isEmpty else {
            throw TokenizerError.malformedModel(
                file: file, offset: buffer.count, expected: "at least one piece (ModelProto.pieces is empty)")
        }
        let modelTypes: [Int32: String] = [1: "UNIGRAM", 2: "BPE", 3: "WORD", 4: "CHAR"]
        guard trainer.modelType == 2 else {
            let name = modelTypes[trainer.modelType] ?? "type \(trainer.modelType)"
            throw TokenizerError.unsupported(file: file, component: "model_type \(name) (only BPE is implemented)")
        }
        guard normalizer.charsmapBytes == 0 else {
            throw TokenizerError.unsupported(
                file: file,
                component: "normalizer '\(normalizer.name)' with a precompiled character map (only 'identity' is implemented)")
        }
        guard !trainer.treatWhitespaceAsSuffix else {
            throw TokenizerError.unsupported(file: file, component: "treat_whitespace_as_suffix")
        }
        // Mirror SentencePiece's load-time checks: unique pieces, one <unk>, ids in range.
        var unknownIDs: [Int32] = []
        for (i, type) in types.enumerated() where type == .unknown { unknownIDs.append(Int32(i)) }
        guard unknownIDs.count == 1 else {
            throw TokenizerError.invalidVocabulary(
                file: file, reason: "expected exactly one UNKNOWN piece, found \(unknownIDs.count)")
        }
        if let empty = pieces.firstIndex(where: { $0.isEmpty }) {
            throw TokenizerError.invalidVocabulary(file: file, reason: "piece \(empty) is empty")
        }
        let n = Int32(pieces.count)
        func optionalID(_ id: Int32, _ name: String) throws -> Int32? {
            if id < 0 { return nil }
            guard id < n else {
                throw TokenizerError.invalidVocabulary(file: file, reason: "\(name) \(id) is not below \(n) pieces")
            }
            return id
        }
        return TokenizerModel(
            source: .sentencePieceModel,
            pieces: pieces, types: types, scores: scores,
            normalizer: NormalizerSettings(
                addDummyPrefix: normalizer.addDummyPrefix,
                removeExtraWhitespaces: normalizer.removeExtraWhitespaces,
                escapeWhitespaces: normalizer.escapeWhitespaces),
            byteFallback: trainer.byteFallback,
            splitDigits: trainer.splitDigits,
            unkID: unknownIDs[0],
            bosID: try optionalID(trainer.bosID, "bos_id"),
            eosID: try optionalID(trainer.eosID, "eos_id"),
            padID: try optionalID(trainer.padID, "pad_id"),
            unknownSurface: trainer.unkSurface,
            mergeRule: .pieceScores)
    }

    private static func parsePiece(_ buffer: UnsafeBufferPointer<UInt8>, range: Range<Int>) throws
        -> (text: String, score: Float, type: PieceType)
    {
        var reader = ProtobufReader(buffer, range: range)
        var text: String?
        var score: Float = 0
        var type = PieceType.normal
        while !reader.isAtEnd {
            let (field, wire) = try reader.readKey()
            switch field {
            case 1:
                try reader.expect(wire, .lengthDelimited, field: "SentencePiece.piece")
                text = try reader.readString()
            case 2:
                try reader.expect(wire, .fixed32, field: "SentencePiece.score")
                score = try reader.readFloat()
            case 3:
                try reader.expect(wire, .varint, field: "SentencePiece.type")
                let start = reader.offset
                let raw = try reader.readVarint()
                guard raw <= 6, let t = PieceType(rawValue: UInt8(raw)) else {
                    throw ProtobufError(offset: start, expected: "a piece type in 1...6 (got \(raw))")
                }
                type = t
            default:
                try reader.skip(wire, field: field)
            }
        }
        guard let text else {
            throw ProtobufError(offset: range.lowerBound, expected: "SentencePiece.piece (field 1) in a piece")
        }
        return (text, score, type)
    }

    private static func parseTrainer(_ buffer: UnsafeBufferPointer<UInt8>, range: Range<Int>) throws -> Trainer {
        var reader = ProtobufReader(buffer, range: range)
        var t = Trainer()
        while !reader.isAtEnd {
            let (field, wire) = try reader.readKey()
            switch field {
            case 3, 24, 25, 35, 40, 41, 42, 43:
                try reader.expect(wire, .varint, field: "TrainerSpec field \(field)")
                switch field {
                case 3: t.modelType = try reader.readInt32()
                case 24: t.treatWhitespaceAsSuffix = try reader.readBool()
                case 25: t.splitDigits = try reader.readBool()
                case 35: t.byteFallback = try reader.readBool()
                case 40: t.unkID = try reader.readInt32()
                case 41: t.bosID = try reader.readInt32()
                case 42: t.eosID = try reader.readInt32()
                default: t.padID = try reader.readInt32()
                }
            case 44:
                try reader.expect(wire, .lengthDelimited, field: "TrainerSpec.unk_surface")
                t.unkSurface = try reader.readString()
            default:
                try reader.skip(wire, field: field)
            }
        }
        return t
    }

    private static func parseNormalizer(_ buffer: UnsafeBufferPointer<UInt8>, range: Range<Int>) throws -> Normalizer {
        var reader = ProtobufReader(buffer, range: range)
        var n = Normalizer()
        while !reader.isAtEnd {
            let (field, wire) = try reader.readKey()
            switch field {
            case 1:
                try reader.expect(wire, .lengthDelimited, field: "NormalizerSpec.name")
                n.name = try reader.readString()
            case 2:
                try reader.expect(wire, .lengthDelimited, field: "NormalizerSpec.precompiled_charsmap")
                n.charsmapBytes = try reader.readLengthDelimited().count
            case 3, 4, 5:
                try reader.expect(wire, .varint, field: "NormalizerSpec field \(field)")
                let value = try reader.readBool()
                if field == 3 { n.addDummyPrefix = value }
                else if field == 4 { n.removeExtraWhitespaces = value }
                else { n.escapeWhitespaces = value }
            default:
                try reader.skip(wire, field: field)
            }
        }
        return n
    }
}
