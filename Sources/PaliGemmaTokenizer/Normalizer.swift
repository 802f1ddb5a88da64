// SentencePiece's normalizer for the "identity" rule (no character map): optional dummy prefix,
// optional removal of extra spaces, and escaping of " " as "▁" (U+2581).
//
// User-defined pieces are copied as units, as SentencePiece does (its normalizer shares the model's
// prefix matcher), which only matters when extra spaces are removed.

/// "▁" in UTF-8.
let spaceSymbol: [UInt8] = [0xE2, 0x96, 0x81]

/// Length of the UTF-8 sequence that starts with `lead` (1 for bytes that cannot start one).
@inline(__always)
func utf8Length(_ lead: UInt8) -> Int {
    if lead < 0x80 { return 1 }
    if lead & 0xE0 == 0xC0 { return 2 }
    if lead & 0xF0 == 0xE0 { return 3 }
    if lead & 0xF8 == 0xF0 { return 4 }
    return 1
}

struct Normalizer: Sendable {
    let settings: NormalizerSettings
    let matcher: SymbolMatcher

    func normalize(_ input: [UInt8]) -> [UInt8] {
        if input.isEmpty { return [] }
        return settings.removeExtraWhitespaces ? normalizeRemovingSpaces(input) : normalizeKeepingSpaces(input)
    }

    /// Fast path (Gemma): every byte is kept; spaces may be escaped and a dummy prefix added.
    private func normalizeKeepingSpaces(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count + input.count / 4 + 3)
        if settings.addDummyPrefix { appendSpace(&out) }
        guard settings.escapeWhitespaces else {
            out.append(contentsOf: input)
            return out
        }
        for b in input {
            if b == 0x20 { out.append(contentsOf: spaceSymbol) } else { out.append(b) }
        }
        return out
    }

    private func appendSpace(_ out: inout [UInt8]) {
        if settings.escapeWhitespaces { out.append(contentsOf: spaceSymbol) } else { out.append(0x20) }
    }

    /// SentencePiece's `Normalizer::Normalize` with `remove_extra_whitespaces`: leading and trailing spaces go,
    /// runs of spaces become one.
    private func normalizeRemovingSpaces(_ input: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(input.count + 3)
        input.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            let n = buffer.count
            var i = 0
            // The length of the unit (user-defined piece or one character) at `i`.
            func unit(_ i: Int) -> Int {
                if let m = matcher.match(base + i, n - i) { return m.length }
                return min(utf8Length(base[i]), n - i)
            }
            while i < n {
                let len = unit(i)
                guard len == 1 && base[i] == 0x20 else { break }
                i += 1
            }
            if i == n { return }
            if settings.addDummyPrefix { appendSpace(&out) }
            var previousWasSpace = true
            while i < n {
                let len = unit(i)
                var s = i
                let e = i + len
                if previousWasSpace {
                    while s < e && base[s] == 0x20 { s += 1 }
                }
                if s < e {
                    for k in s..<e {
                        if settings.escapeWhitespaces && base[k] == 0x20 {
                            out.append(contentsOf: spaceSymbol)
                        } else {
                            out.append(base[k])
                        }
                    }
                    previousWasSpace = base[e - 1] == 0x20
                }
                i = e
            }
            let trailing: [UInt8] = settings.escapeWhitespaces ? spaceSymbol : [0x20]
            while out.count >= trailing.count && Array(out.suffix(trailing.count)) == trailing {
                out.removeLast(trailing.count)
            }
        }
        return out
    }
}
