// Lookup structures built once per tokenizer: piece bytes -> id, and id pair -> merge.

/// All pieces' UTF-8 bytes in one buffer, addressed by id.
struct PieceBytes: Sendable {
    let bytes: [UInt8]
    /// `starts[id]..<starts[id + 1]` are the bytes of piece `id`.
    let starts: [Int32]

    init(_ pieces: [String]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(pieces.count * 8)
        var starts: [Int32] = [0]
        starts.reserveCapacity(pieces.count + 1)
        for piece in pieces {
            bytes.append(contentsOf: piece.utf8)
            starts.append(Int32(bytes.count))
        }
        self.bytes = bytes
        self.starts = starts
    }

    init(bytes: [UInt8], starts: [Int32]) {
        self.bytes = bytes
        self.starts = starts
    }

    var count: Int { starts.count - 1 }

    func range(_ id: Int) -> Range<Int> { Int(starts[id])..<Int(starts[id + 1]) }
}

/// 64-bit FNV-1a over a byte range, finished with a mixer so the low bits are usable as a table index.
@inline(__always)
func hashBytes(_ base: UnsafePointer<UInt8>, _ count: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for i in 0..<count {
        h = (h ^ UInt64(base[i])) &* 0x0000_0100_0000_01b3
    }
    h ^= h >> 33
    h = h &* 0xff51_afd7_ed55_8ccd
    h ^= h >> 33
    return h
}

/// Open-addressing hash table from piece bytes to id, over a subset of the vocabulary.
struct PieceTable: Sendable {
    private var slots: [Int32]
    private let mask: Int
    /// The first id whose spelling was already in the table, if any.
    let firstDuplicate: Int32?

    /// Builds a table of the given ids. When two ids spell the same piece, the first one listed wins.
    init(ids: [Int32], pieces: PieceBytes) {
        var capacity = 16
        while capacity < ids.count * 2 { capacity <<= 1 }
        let mask = capacity - 1
        var slots = [Int32](repeating: -1, count: capacity)
        var duplicate: Int32?
        pieces.bytes.withUnsafeBufferPointer { all in
            guard let base = all.baseAddress else { return }  // no bytes: every piece is empty
            for id in ids {
                let r = pieces.range(Int(id))
                var slot = Int(truncatingIfNeeded: hashBytes(base + r.lowerBound, r.count)) & mask
                while true {
                    let other = slots[slot]
                    if other < 0 { slots[slot] = id; break }
                    let o = pieces.range(Int(other))
                    if o.count == r.count && memEqual(base + o.lowerBound, base + r.lowerBound, r.count) {
                        if duplicate == nil { duplicate = id }
                        break
                    }
                    slot = (slot + 1) & mask
                }
            }
        }
        self.slots = slots
        self.mask = mask
        self.firstDuplicate = duplicate
    }

    /// The id of the piece spelled by `key[0..<count]`, or -1.
    @inline(__always)
    func lookup(_ key: UnsafePointer<UInt8>, _ count: Int, pieceBytes: UnsafePointer<UInt8>, starts: UnsafePointer<Int32>)
        -> Int32
    {
        var slot = Int(truncatingIfNeeded: hashBytes(key, count)) & mask
        return slots.withUnsafeBufferPointer { slots in
            while true {
                let id = slots[slot]
                if id < 0 { return -1 }
                let start = Int(starts[Int(id)])
                let length = Int(starts[Int(id) + 1]) - start
                if length == count && memEqual(pieceBytes + start, key, count) { return id }
                slot = (slot + 1) & mask
            }
        }
    }

    /// Convenience lookup for a string (not for hot loops).
    func lookup(_ text: String, in pieces: PieceBytes) -> Int32? {
        let key = Array(text.utf8)
        let id: Int32 = key.withUnsafeBufferPointer { k in
            pieces.bytes.withUnsafeBufferPointer { b in
                pieces.starts.withUnsafeBufferPointer { s in
                    guard let k = k.baseAddress, let b = b.baseAddress, let s = s.baseAddress else { return -1 }
                    return lookup(k, key.count, pieceBytes: b, starts: s)
                }
            }
        }
        return id >= 0 ? id : nil
    }
}

@inline(__always)
func memEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ count: Int) -> Bool {
    var i = 0
    while i < count {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}

/// Open-addressing hash table from a 64-bit key (two packed ids) to a 64-bit value.
struct PairTable: Sendable {
    private var keys: [UInt64]
    private var values: [UInt64]
    private let mask: Int
    private static let empty = UInt64.max

    init(capacityFor count: Int) {
        var capacity = 16
        while capacity < count * 2 { capacity <<= 1 }
        mask = capacity - 1
        keys = [UInt64](repeating: PairTable.empty, count: capacity)
        values = [UInt64](repeating: 0, count: capacity)
    }

    @inline(__always)
    private func slot(for key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9e37_79b9_7f4a_7c15) >> 20) & mask
    }

    /// Inserts unless the key is present; returns false if it was.
    @discardableResult
    mutating func insert(_ key: UInt64, _ value: UInt64) -> Bool {
        var s = slot(for: key)
        while true {
            if keys[s] == PairTable.empty {
                keys[s] = key
                values[s] = value
                return true
            }
            if keys[s] == key { return false }
            s = (s + 1) & mask
        }
    }

    /// Inserts or replaces (a later duplicate merge wins, as in Hugging Face tokenizers).
    mutating func upsert(_ key: UInt64, _ value: UInt64) {
        var s = slot(for: key)
        while keys[s] != PairTable.empty && keys[s] != key { s = (s + 1) & mask }
        keys[s] = key
        values[s] = value
    }

    @inline(__always)
    func lookup(_ key: UInt64) -> UInt64? {
        var s = slot(for: key)
        return keys.withUnsafeBufferPointer { keys in
            while true {
                let k = keys[s]
                if k == key { return values[s] }
                if k == PairTable.empty { return nil }
                s = (s + 1) & mask
            }
        }
    }
}
