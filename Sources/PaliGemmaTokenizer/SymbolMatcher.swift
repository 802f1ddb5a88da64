// Longest-prefix matching of user-defined pieces (`<image>`, `<loc0042>`, `<start_of_turn>`, "\n\n", ...),
// SentencePiece's PrefixMatcher: at each position the longest user-defined piece that starts there wins,
// and it becomes one frozen symbol that BPE never merges.

struct SymbolMatcher: Sendable {
    /// Trie edges: `node << 8 | byte` -> child node.
    private var edges: PairTable
    /// Piece id ending at each node, or -1.
    private var terminal: [Int32]
    /// Whether any piece starts with this byte (a cheap first filter).
    private var firstByte: [Bool]
    let isEmpty: Bool

    init(ids: [Int32], pieces: PieceBytes) {
        let total = ids.reduce(0) { $0 + pieces.range(Int($1)).count }
        edges = PairTable(capacityFor: max(total, 1))
        terminal = [-1]
        firstByte = [Bool](repeating: false, count: 256)
        isEmpty = ids.isEmpty
        for id in ids {
            var node: UInt64 = 0
            let range = pieces.range(Int(id))
            guard !range.isEmpty else { continue }
            firstByte[Int(pieces.bytes[range.lowerBound])] = true
            for k in range {
                let key = node << 8 | UInt64(pieces.bytes[k])
                if let child = edges.lookup(key) {
                    node = child
                } else {
                    let child = UInt64(terminal.count)
                    terminal.append(-1)
                    edges.upsert(key, child)
                    node = child
                }
            }
            // First definition wins, as in SentencePiece's id lookup.
            if terminal[Int(node)] < 0 { terminal[Int(node)] = id }
        }
    }

    /// The longest user-defined piece at the start of `text[0..<count]`.
    @inline(__always)
    func match(_ text: UnsafePointer<UInt8>, _ count: Int) -> (length: Int, id: Int32)? {
        guard count > 0, firstByte[Int(text[0])] else { return nil }
        var node: UInt64 = 0
        var best: (length: Int, id: Int32)?
        var k = 0
        while k < count, let child = edges.lookup(node << 8 | UInt64(text[k])) {
            node = child
            k += 1
            let id = terminal[Int(node)]
            if id >= 0 { best = (k, id) }
        }
        return best
    }
}
