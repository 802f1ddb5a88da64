// Ids to text, following SentencePiece's DecodeIds:
// - "▁" becomes " "; with a dummy prefix (or extra-space removal) the first piece's leading "▁" is dropped;
// - runs of `<0xNN>` byte pieces are reassembled into UTF-8; each byte that does not start a valid sequence
//   becomes U+FFFD (one per byte, as SentencePiece does);
// - CONTROL pieces (`<bos>`, `<eos>`, `<pad>`) are invisible and `<unk>` reads " ⁇ " unless special
//   tokens are kept, in which case they are written as their piece text.
// The same state machine drives `decode` and the streaming decoder, so both give the same text.

/// U+FFFD in UTF-8.
private let replacementCharacter: [UInt8] = [0xEF, 0xBF, 0xBD]

/// Per-id decoding data, built once.
struct DecoderTable: Sendable {
    enum Kind: UInt8 {
        case text  // surface = piece with "▁" replaced by " "
        case control
        case unknown
        case byte
    }

    let kinds: [Kind]
    /// Surfaces ("▁" -> " "), in one buffer addressed like `PieceBytes`.
    let surfaces: PieceBytes
    /// Raw piece text bytes (for special tokens kept as text).
    let raw: PieceBytes
    /// Whether the piece starts with "▁" (its surface then starts with a space to strip at the start).
    let startsWithSpace: [Bool]
    /// The byte value of each BYTE piece.
    let byteValue: [UInt8]
    let unknownSurface: [UInt8]
    /// Strip the first piece's leading "▁" (SentencePiece: add_dummy_prefix or remove_extra_whitespaces).
    let stripLeadingSpace: Bool
    /// Keep stripping while the output is still empty (SentencePiece: remove_extra_whitespaces).
    let stripAllLeadingSpaces: Bool

    /// Builds the table from the raw piece bytes (no per-piece String work: this runs at load time).
    init(model: TokenizerModel, raw: PieceBytes) {
        let n = raw.count
        var kinds = [Kind](repeating: .text, count: n)
        var startsWithSpace = [Bool](repeating: false, count: n)
        var byteValue = [UInt8](repeating: 0, count: n)
        var surfaceBytes: [UInt8] = []
        surfaceBytes.reserveCapacity(raw.bytes.count)
        var surfaceStarts: [Int32] = [0]
        surfaceStarts.reserveCapacity(n + 1)
        raw.bytes.withUnsafeBufferPointer { b in
            for id in 0..<n {
                let r = raw.range(id)
                switch model.types[id] {
                case .control: kinds[id] = .control
                case .unknown: kinds[id] = .unknown
                case .byte:
                    if let v = DecoderTable.parseBytePiece(UnsafeBufferPointer(rebasing: b[r])) {
                        kinds[id] = .byte
                        byteValue[id] = v
                    }
                default: break
                }
                startsWithSpace[id] = r.count >= 3 && b[r.lowerBound] == 0xE2 && b[r.lowerBound + 1] == 0x96
                    && b[r.lowerBound + 2] == 0x81
                if kinds[id] == .text {
                    var k = r.lowerBound
                    while k < r.upperBound {
                        if k + 2 < r.upperBound && b[k] == 0xE2 && b[k + 1] == 0x96 && b[k + 2] == 0x81 {
                            surfaceBytes.append(0x20)
                            k += 3
                        } else {
                            surfaceBytes.append(b[k])
                            k += 1
                        }
                    }
                }
                surfaceStarts.append(Int32(surfaceBytes.count))
            }
        }
        self.kinds = kinds
        self.surfaces = PieceBytes(bytes: surfaceBytes, starts: surfaceStarts)
        self.raw = raw
        self.startsWithSpace = startsWithSpace
        self.byteValue = byteValue
        self.unknownSurface = Array(model.unknownSurface.utf8)
        let settings = model.normalizer
        stripLeadingSpace = settings.addDummyPrefix || settings.removeExtraWhitespaces || model.decoderStripsLeadingSpace
        stripAllLeadingSpaces = settings.removeExtraWhitespaces
    }

    /// "<0xNN>" -> NN.
    static func parseBytePiece(_ piece: String) -> UInt8? {
        let u = Array(piece.utf8)
        return u.withUnsafeBufferPointer { parseBytePiece($0) }
    }

    /// "<0xNN>" (upper-case hex) -> NN.
    static func parseBytePiece(_ u: UnsafeBufferPointer<UInt8>) -> UInt8? {
        guard u.count == 6, u[0] == 0x3c, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3e else { return nil }
        func hex(_ c: UInt8) -> UInt8? {
            if (0x30...0x39).contains(c) { return c - 0x30 }
            if (0x41...0x46).contains(c) { return c - 0x41 + 10 }
            return nil
        }
        guard let hi = hex(u[3]), let lo = hex(u[4]) else { return nil }
        return hi << 4 | lo
    }
}

/// Decoding state shared by `Tokenizer.decode` and `StreamingDecoder`.
struct DecodeState: Sendable {
    private var pending: [UInt8] = []
    private var atStart = true
    let skipSpecial: Bool

    init(skipSpecial: Bool) { self.skipSpecial = skipSpecial }

    /// Appends the text of `id` to `out`: only complete UTF-8 sequences; bytes of a sequence still open are
    /// kept until the next piece (or `finish`). Ids outside the vocabulary are ignored.
    mutating func push(_ id: Int32, table: DecoderTable, into out: inout [UInt8]) {
        guard id >= 0, Int(id) < table.kinds.count else { return }
        let i = Int(id)
        switch table.kinds[i] {
        case .byte:
            pending.append(table.byteValue[i])
            atStart = false
            drain(final: false, into: &out)
            return
        case .control:
            drain(final: true, into: &out)
            if !skipSpecial {
                out.append(contentsOf: table.raw.bytes[table.raw.range(i)])
                atStart = false
            }
        case .unknown:
            drain(final: true, into: &out)
            if skipSpecial {
                out.append(contentsOf: table.unknownSurface)
            } else {
                out.append(contentsOf: table.raw.bytes[table.raw.range(i)])
            }
            atStart = false
        case .text:
            drain(final: true, into: &out)
            var range = table.surfaces.range(i)
            var consumedSpace = false
            if atStart && table.stripLeadingSpace && table.startsWithSpace[i] {
                range = (range.lowerBound + 1)..<range.upperBound
                consumedSpace = !table.stripAllLeadingSpaces
            }
            out.append(contentsOf: table.surfaces.bytes[range])
            if consumedSpace || !range.isEmpty { atStart = false }
        }
    }

    /// Flushes bytes of an unfinished sequence (each becomes U+FFFD, as in SentencePiece).
    mutating func finish(into out: inout [UInt8]) {
        drain(final: true, into: &out)
    }

    /// Moves complete characters from `pending` to `out`. When not `final`, a valid-so-far incomplete
    /// sequence at the end stays pending.
    private mutating func drain(final: Bool, into out: inout [UInt8]) {
        if pending.isEmpty { return }
        var k = 0
        let n = pending.count
        while k < n {
            let b = pending[k]
            if b < 0x80 {
                out.append(b)
                k += 1
                continue
            }
            let need: Int
            if b & 0xE0 == 0xC0 { need = 2 } else if b & 0xF0 == 0xE0 { need = 3 } else if b & 0xF8 == 0xF0 { need = 4 } else { need = 0 }
            if need == 0 {
                out.append(contentsOf: replacementCharacter)
                k += 1
                continue
            }
            let available = n - k
            if available < need {
                let trailsOK = (1..<available).allSatisfy { pending[k + $0] & 0xC0 == 0x80 }
                if !final && trailsOK { break }  // may still complete
                out.append(contentsOf: replacementCharacter)
                k += 1
                continue
            }
            if DecodeState.isValidSequence(pending, at: k, length: need) {
                out.append(contentsOf: pending[k..<(k + need)])
                k += need
            } else {
                out.append(contentsOf: replacementCharacter)
                k += 1
            }
        }
        pending.removeFirst(k)
    }

    /// SentencePiece's DecodeUTF8 rules: trail bytes, no overlong forms, no surrogates, at most U+10FFFF.
    private static func isValidSequence(_ b: [UInt8], at k: Int, length: Int) -> Bool {
        for j in 1..<length where b[k + j] & 0xC0 != 0x80 { return false }
        var cp: UInt32
        switch length {
        case 2:
            cp = UInt32(b[k] & 0x1F) << 6 | UInt32(b[k + 1] & 0x3F)
            return cp >= 0x80
        case 3:
            cp = UInt32(b[k] & 0x0F) << 12 | UInt32(b[k + 1] & 0x3F) << 6 | UInt32(b[k + 2] & 0x3F)
            return cp >= 0x800 && !(0xD800...0xDFFF).contains(cp)
        default:
            cp = UInt32(b[k] & 0x07) << 18 | UInt32(b[k + 1] & 0x3F) << 12 | UInt32(b[k + 2] & 0x3F) << 6
                | UInt32(b[k + 3] & 0x3F)
            return cp >= 0x10000 && cp <= 0x10FFFF
        }
    }
}
