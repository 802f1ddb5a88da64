/// Keys and values of every decoder layer for one sequence: per-request state, kept apart from
/// the (immutable, shareable) model. Sized once for the longest sequence it will hold.
///
/// Shape letters: L capacity (tokens), Hkv key/value heads, Dh head width.
public final class KVCache: @unchecked Sendable {
    public let capacity: Int
    /// Tokens stored so far; the next token goes to sequence index `length`.
    public internal(set) var length = 0
    let keys: [Matrix]  // per layer [L, Hkv·Dh]
    let values: [Matrix]  // per layer [L, Hkv·Dh]

    public init(layers: Int, capacity: Int, kvWidth: Int) {
        self.capacity = capacity
        keys = (0..<layers).map { _ in Matrix(rows: capacity, cols: kvWidth) }
        values = (0..<layers).map { _ in Matrix(rows: capacity, cols: kvWidth) }
    }

    /// Forgets everything (the memory is kept for reuse).
    public func reset() { length = 0 }

    /// Drops tokens past `newLength` (e.g. to re-run a step).
    public func truncate(to newLength: Int) {
        precondition(newLength >= 0 && newLength <= length)
        length = newLength
    }

    /// Bytes held.
    public var byteCount: Int { keys.count * 2 * capacity * (keys.first?.cols ?? 0) * 4 }
}
