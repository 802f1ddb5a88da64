// Byte-pair encoding of normalized text, as SentencePiece's bpe::Model::Encode does it:
//
// 1. Split the text into symbols: a user-defined piece where one starts (frozen, never merged), else one
//    UTF-8 character.
// 2. Put every adjacent pair whose concatenation is a mergeable piece in a priority queue keyed by that
//    piece's score (ties: leftmost first); repeatedly merge the best pair that is still current, and queue
//    the new pairs on both sides. With a Hugging Face file the queue is keyed by merge rank instead.
// 3. Emit each symbol's id; UNUSED pieces are split back into the pieces they were merged from; symbols
//    that are not pieces become `<0xNN>` byte pieces (byte fallback) or `<unk>`.
//
// Frozen symbols cut the text into independent segments, each merged on its own (same result, less work).
// Each merge is O(log n) through the heap, so encoding is O(n log n) in the text length.

struct BPEEncoder: Sendable {
    let pieces: PieceBytes
    let types: [PieceType]
    let scores: [Float]
    /// Every piece by spelling (SentencePiece's PieceToId: CONTROL / UNKNOWN / BYTE first, then the rest).
    let allPieces: PieceTable
    /// NORMAL, USER_DEFINED and UNUSED pieces: those merges can form.
    let mergeable: PieceTable
    let rule: MergeRule
    let matcher: SymbolMatcher
    let byteIDs: [Int32]
    let unkID: Int32?
    let byteFallback: Bool
    let ignoreMerges: Bool
    let fuseUnknown: Bool
    let hasUnused: Bool

    private struct Symbol {
        var start: Int32
        var end: Int32
        var prev: Int32
        var next: Int32
        var id: Int32
    }

    private struct Candidate {
        var priority: Float
        var left: Int32
        var right: Int32
        var size: Int32
        var id: Int32

        @inline(__always)
        func before(_ other: Candidate) -> Bool {
            priority > other.priority || (priority == other.priority && left < other.left)
        }
    }

    /// Reusable buffers for one encode call.
    private struct Scratch {
        var symbols: [Symbol] = []
        var heap: [Candidate] = []
        var reverseMerges: [Int32: (Range<Int>, Range<Int>)] = [:]
    }

    /// Appends the ids of `text`; `matcher` finds the frozen pieces (by default the user-defined ones).
    func encode(normalized text: [UInt8], into out: inout [Int32], matcher: SymbolMatcher? = nil) {
        let matcher = matcher ?? self.matcher
        text.withUnsafeBufferPointer { t in
            pieces.bytes.withUnsafeBufferPointer { pb in
                pieces.starts.withUnsafeBufferPointer { ps in
                    guard let tb = t.baseAddress, let pbb = pb.baseAddress, let psb = ps.baseAddress else { return }
                    var ctx = Context(text: tb, pieceBytes: pbb, starts: psb)
                    var scratch = Scratch()
                    scratch.symbols.reserveCapacity(min(t.count, 1 << 16))
                    var i = 0
                    let n = t.count
                    while i < n {
                        if let m = matcher.match(tb + i, n - i) {
                            mergeSegment(&scratch, &ctx, into: &out)
                            out.append(m.id)
                            i += m.length
                            continue
                        }
                        let len = min(utf8Length(tb[i]), n - i)
                        let id = allPieces.lookup(tb + i, len, pieceBytes: pbb, starts: psb)
                        scratch.symbols.append(
                            Symbol(start: Int32(i), end: Int32(i + len), prev: -1, next: -1, id: id))
                        i += len
                    }
                    mergeSegment(&scratch, &ctx, into: &out)
                }
            }
        }
    }

    private struct Context {
        let text: UnsafePointer<UInt8>
        let pieceBytes: UnsafePointer<UInt8>
        let starts: UnsafePointer<Int32>
    }

    /// Merges the pending symbols (one segment between frozen pieces) and appends their ids.
    private func mergeSegment(_ scratch: inout Scratch, _ ctx: inout Context, into out: inout [Int32]) {
        let count = scratch.symbols.count
        if count == 0 { return }
        defer {
            scratch.symbols.removeAll(keepingCapacity: true)
            scratch.heap.removeAll(keepingCapacity: true)
            if hasUnused { scratch.reverseMerges.removeAll(keepingCapacity: true) }
        }
        if ignoreMerges {
            let start = Int(scratch.symbols[0].start), end = Int(scratch.symbols[count - 1].end)
            let id = allPieces.lookup(ctx.text + start, end - start, pieceBytes: ctx.pieceBytes, starts: ctx.starts)
            if id >= 0 {
                out.append(id)
                return
            }
        }
        scratch.symbols.withUnsafeMutableBufferPointer { symbols in
            for k in 0..<count {
                symbols[k].prev = Int32(k - 1)
                symbols[k].next = k + 1 < count ? Int32(k + 1) : -1
            }
        }
        for k in 0..<(count - 1) { addCandidate(Int32(k), Int32(k + 1), &scratch, ctx) }

        while let top = popHeap(&scratch.heap) {
            let l = Int(top.left), r = Int(top.right)
            let left = scratch.symbols[l], right = scratch.symbols[r]
            // Skip entries made stale by earlier merges.
            guard left.end > left.start, right.end > right.start, left.next == top.right,
                (left.end - left.start) + (right.end - right.start) == top.size
            else { continue }
            scratch.symbols[l].end = right.end
            scratch.symbols[l].id = top.id
            scratch.symbols[l].next = right.next
            if right.next >= 0 { scratch.symbols[Int(right.next)].prev = top.left }
            scratch.symbols[r].end = scratch.symbols[r].start  // removed
            let prev = scratch.symbols[l].prev, next = scratch.symbols[l].next
            if prev >= 0 { addCandidate(prev, top.left, &scratch, ctx) }
            if next >= 0 { addCandidate(top.left, next, &scratch, ctx) }
        }

        var k: Int32 = 0
        var previousWasUnknown = false
        while k >= 0 {
            let s = scratch.symbols[Int(k)]
            emit(Int(s.start)..<Int(s.end), id: s.id, scratch, ctx, &previousWasUnknown, into: &out)
            k = s.next
        }
    }

    @inline(__always)
    private func addCandidate(_ l: Int32, _ r: Int32, _ scratch: inout Scratch, _ ctx: Context) {
        let left = scratch.symbols[Int(l)], right = scratch.symbols[Int(r)]
        let size = right.end - left.start
        switch rule {
        case .pieceScores:
            let id = mergeable.lookup(
                ctx.text + Int(left.start), Int(size), pieceBytes: ctx.pieceBytes, starts: ctx.starts)
            if id < 0 { return }
            pushHeap(&scratch.heap, Candidate(priority: scores[Int(id)], left: l, right: r, size: size, id: id))
            if hasUnused && types[Int(id)] == .unused {
                scratch.reverseMerges[id] = (
                    Int(left.start)..<Int(left.end), Int(right.start)..<Int(right.end)
                )
            }
        case .mergeRanks(let table):
            guard left.id >= 0, right.id >= 0,
                let v = table.lookup(UInt64(UInt32(left.id)) << 32 | UInt64(UInt32(right.id)))
            else { return }
            let rank = Float(v >> 32)
            let id = Int32(truncatingIfNeeded: v & 0xFFFF_FFFF)
            pushHeap(&scratch.heap, Candidate(priority: -rank, left: l, right: r, size: size, id: id))
        }
    }

    /// Appends the ids for one final symbol.
    private func emit(
        _ range: Range<Int>, id: Int32, _ scratch: Scratch, _ ctx: Context, _ previousWasUnknown: inout Bool,
        into out: inout [Int32]
    ) {
        if id >= 0 {
            previousWasUnknown = false
            if hasUnused && types[Int(id)] == .unused, let parts = scratch.reverseMerges[id] {
                for part in [parts.0, parts.1] {
                    let partID = allPieces.lookup(
                        ctx.text + part.lowerBound, part.count, pieceBytes: ctx.pieceBytes, starts: ctx.starts)
                    emit(part, id: partID, scratch, ctx, &previousWasUnknown, into: &out)
                }
                return
            }
            out.append(id)
            return
        }
        if byteFallback {
            previousWasUnknown = false
            for k in range {
                let b = byteIDs[Int(ctx.text[k])]
                if b >= 0 { out.append(b) } else if let unkID { out.append(unkID) }
            }
            return
        }
        guard let unkID else { return }  // Hugging Face drops unknown characters when there is no unk token.
        if fuseUnknown && previousWasUnknown { return }
        out.append(unkID)
        previousWasUnknown = true
    }

    // A binary max-heap ordered by `Candidate.before`.

    @inline(__always)
    private func pushHeap(_ heap: inout [Candidate], _ c: Candidate) {
        heap.append(c)
        heap.withUnsafeMutableBufferPointer { h in
            var i = h.count - 1
            while i > 0 {
                let parent = (i - 1) >> 1
                if !h[i].before(h[parent]) { break }
                h.swapAt(i, parent)
                i = parent
            }
        }
    }

    @inline(__always)
    private func popHeap(_ heap: inout [Candidate]) -> Candidate? {
        guard let last = heap.popLast() else { return nil }
        if heap.isEmpty { return last }
        return heap.withUnsafeMutableBufferPointer { h -> Candidate in
            let top = h[0]
            h[0] = last
            var i = 0
            let n = h.count
            while true {
                let l = 2 * i + 1
                if l >= n { break }
                var best = l
                if l + 1 < n && h[l + 1].before(h[l]) { best = l + 1 }
                if !h[best].before(h[i]) { break }
                h.swapAt(i, best)
                i = best
            }
            return top
        }
    }
}
