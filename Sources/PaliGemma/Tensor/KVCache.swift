import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

// Keys and values of the decoder layers, per sequence, taken from a bounded pool of fixed-size
// blocks (a paged cache, as in vLLM): sequences of different lengths come and go without
// fragmenting memory, and the pool never holds more than it was created with.
//
// Shape letters: L decoder layers, B tokens per block, N blocks in the pool, Hkv key/value
// heads, Dh head width (a token's keys of one layer are Hkv·Dh floats, and so are its values).

/// Memory for the KV caches of many sequences: per layer, N blocks of B tokens of keys and of
/// values (float32). Blocks are handed to `KVCache`s as they grow and come back when a cache is
/// released or freed. The arenas are reserved once (anonymous mappings) and touched only as
/// blocks are used, and a block's pages go back to the system when it comes back to the pool,
/// so a large pool costs resident memory only for what the sequences alive now have written (a
/// server's memory falls back when its requests end, instead of staying at its busiest moment).
public final class KVCachePool: @unchecked Sendable {
    public let layers: Int
    /// Floats of one token's keys (or values) in one layer: Hkv·Dh.
    public let kvWidth: Int
    /// Tokens per block (B).
    public let blockTokens: Int
    /// Blocks in the pool (N).
    public let blockCount: Int
    let keys: [UnsafeMutablePointer<Float>]  // per layer [N·B, Hkv·Dh]
    let values: [UnsafeMutablePointer<Float>]  // per layer [N·B, Hkv·Dh]
    /// Bytes of each of those mappings (whole pages).
    private let arenaBytes: Int
    private let lock = NSLock()
    private var free: [Int32]

    /// Tokens per block when none is given: small enough that a sequence wastes little of its
    /// last block, large enough that attention runs over long runs of keys.
    public static let defaultBlockTokens = 64

    /// A pool of `blockCount` blocks of `blockTokens` tokens for `layers` layers.
    public init(layers: Int, kvWidth: Int, blockTokens: Int = KVCachePool.defaultBlockTokens, blockCount: Int) throws {
        guard layers > 0, kvWidth > 0, blockTokens > 0, blockCount > 0, blockCount <= Int(Int32.max) else {
            throw PaliGemmaError.input("KV cache pool: layers, width, block size and block count must be positive (got \(layers), \(kvWidth), \(blockTokens), \(blockCount))")
        }
        let (floats, overflow) = blockCount.multipliedReportingOverflow(by: blockTokens * kvWidth)
        guard !overflow, floats <= Int.max / 8 else {
            throw PaliGemmaError.input("KV cache pool of \(blockCount) blocks of \(blockTokens) tokens is too large")
        }
        self.layers = layers
        self.kvWidth = kvWidth
        self.blockTokens = blockTokens
        self.blockCount = blockCount
        // Zero pages until written: pages are committed when a block is first written, and a
        // cache never reads past what it wrote.
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = (floats * MemoryLayout<Float>.size + page - 1) / page * page
        var arenas: [UnsafeMutablePointer<Float>] = []
        for _ in 0..<2 * layers {
            guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), p != MAP_FAILED else {
                for a in arenas { munmap(a, bytes) }
                throw PaliGemmaError.input("KV cache pool of \(blockCount) blocks of \(blockTokens) tokens: cannot reserve \(bytes) bytes per layer (\(String(cString: strerror(errno))))")
            }
            arenas.append(p.bindMemory(to: Float.self, capacity: floats))
        }
        arenaBytes = bytes
        keys = Array(arenas[..<layers])
        values = Array(arenas[layers...])
        free = (0..<Int32(blockCount)).reversed()
    }

    /// A pool holding `tokens` tokens for `sequences` sequences of the given layer shape: the
    /// blocks they need, rounding each sequence up to whole blocks.
    public convenience init(layers: Int, kvWidth: Int, tokens: Int, sequences: Int = 1,
                            blockTokens: Int = KVCachePool.defaultBlockTokens) throws {
        let perSequence = (max(tokens, 1) + blockTokens - 1) / blockTokens
        try self.init(layers: layers, kvWidth: kvWidth, blockTokens: blockTokens, blockCount: perSequence * max(sequences, 1))
    }

    deinit {
        for p in keys + values { munmap(p, arenaBytes) }
    }

    /// Bytes of cache one token takes: keys and values of every layer, float32.
    public var bytesPerToken: Int { layers * 2 * kvWidth * MemoryLayout<Float>.size }
    /// Bytes the pool can hold in all.
    public var byteCapacity: Int { blockCount * blockTokens * bytesPerToken }
    /// Blocks not held by any cache.
    public var freeBlocks: Int { lock.withLock { free.count } }

    /// A new, empty cache drawing on this pool; `reserving` tokens are taken now (or the call
    /// throws), more as it grows.
    public func makeCache(reserving tokens: Int = 0) throws -> KVCache {
        let cache = KVCache(pool: self)
        try cache.reserve(tokens)
        return cache
    }

    func take(_ n: Int) throws -> [Int32] {
        try lock.withLock {
            guard n <= free.count else {
                throw PaliGemmaError.input("the KV cache pool is full: \(n) more block(s) of \(blockTokens) tokens needed, \(free.count) of \(blockCount) free")
            }
            let taken = Array(free.suffix(n))
            free.removeLast(n)
            return taken
        }
    }

    func give(_ blocks: [Int32]) {
        guard !blocks.isEmpty else { return }
        releasePages(of: blocks)
        lock.withLock { free.append(contentsOf: blocks) }
    }

    /// Hands the pages of `blocks` (not in the free list yet, so no cache writes them meanwhile)
    /// back to the system: they read as zero until written again. Runs of consecutive blocks go
    /// in one call per arena; only whole pages inside a run are released.
    private func releasePages(of blocks: [Int32]) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let blockBytes = blockTokens * kvWidth * MemoryLayout<Float>.size
        let sorted = blocks.sorted(), arenas = keys + values
        var i = 0
        while i < sorted.count {
            var j = i + 1
            while j < sorted.count && sorted[j] == sorted[j - 1] + 1 { j += 1 }
            let start = (Int(sorted[i]) * blockBytes + page - 1) / page * page
            let end = Int(sorted[j - 1] + 1) * blockBytes / page * page
            if end > start {
                for arena in arenas { _ = madvise(UnsafeMutableRawPointer(arena) + start, end - start, MADV_DONTNEED) }
            }
            i = j
        }
    }
}

/// The keys and values of one sequence: a list of blocks of its pool, in sequence order.
/// Per-request state, kept apart from the (immutable, shareable) model; its blocks go back to
/// the pool when it is released or freed.
public final class KVCache: @unchecked Sendable {
    public let pool: KVCachePool
    /// Blocks held, in sequence order: token j is row j % B of block `blocks[j / B]`.
    public private(set) var blocks: [Int32] = []
    /// Tokens stored so far; the next token goes to sequence index `length`.
    public internal(set) var length = 0

    init(pool: KVCachePool) { self.pool = pool }

    /// A cache with a pool of its own holding exactly `capacity` tokens.
    public convenience init(layers: Int, capacity: Int, kvWidth: Int) throws {
        let pool = try KVCachePool(layers: layers, kvWidth: kvWidth, tokens: capacity)
        self.init(pool: pool)
        try reserve(capacity)
    }

    deinit { pool.give(blocks) }

    /// Tokens it can hold without taking more blocks.
    public var capacity: Int { blocks.count * pool.blockTokens }

    /// Makes room for `tokens` tokens in all, taking blocks from the pool (throws, taking
    /// nothing, when the pool has too few).
    public func reserve(_ tokens: Int) throws {
        let need = (tokens + pool.blockTokens - 1) / pool.blockTokens - blocks.count
        if need > 0 { blocks += try pool.take(need) }
    }

    /// Forgets everything; the blocks are kept for reuse by this cache.
    public func reset() { length = 0 }

    /// Forgets everything and gives the blocks back to the pool.
    public func release() {
        pool.give(blocks)
        blocks = []
        length = 0
    }

    /// Drops tokens past `newLength` (e.g. to re-run a step).
    public func truncate(to newLength: Int) {
        precondition(newLength >= 0 && newLength <= length)
        length = newLength
    }

    /// Bytes of pool memory held.
    public var byteCount: Int { capacity * pool.bytesPerToken }

    /// Replaces this cache's tokens with a copy of `other`'s (a pool of the same layer shape),
    /// taking blocks as needed: several sequences then continue one prefilled prompt.
    public func copy(from other: KVCache) throws {
        guard other.pool.layers == pool.layers, other.pool.kvWidth == pool.kvWidth else {
            throw PaliGemmaError.input("KV cache copy: the caches were made for different decoder shapes")
        }
        try reserve(other.length)
        for layer in 0..<pool.layers {
            for token in 0..<other.length {
                keys(layer: layer, token: token).update(from: other.keys(layer: layer, token: token), count: pool.kvWidth)
                values(layer: layer, token: token).update(from: other.values(layer: layer, token: token), count: pool.kvWidth)
            }
        }
        length = other.length
    }

    /// Pointer to the keys (or values) of sequence index `token` in `layer`.
    func keys(layer: Int, token: Int) -> UnsafeMutablePointer<Float> {
        pool.keys[layer] + row(token) * pool.kvWidth
    }
    func values(layer: Int, token: Int) -> UnsafeMutablePointer<Float> {
        pool.values[layer] + row(token) * pool.kvWidth
    }
    private func row(_ token: Int) -> Int {
        Int(blocks[token / pool.blockTokens]) * pool.blockTokens + token % pool.blockTokens
    }

    /// Writes rows `rows` of k and v [_, Hkv·Dh] as the keys and values of sequence indices
    /// start..<start+rows.count of `layer` (the blocks must be reserved).
    func store(layer: Int, start: Int, keys k: Matrix, values v: Matrix, rows: Range<Int>) {
        precondition(k.cols == pool.kvWidth && v.cols == pool.kvWidth && start + rows.count <= capacity)
        var t = 0
        while t < rows.count {
            // One copy per run of rows that stays inside a block.
            let token = start + t
            let n = min(rows.count - t, pool.blockTokens - token % pool.blockTokens)
            keys(layer: layer, token: token).update(from: k.row(rows.lowerBound + t), count: n * pool.kvWidth)
            values(layer: layer, token: token).update(from: v.row(rows.lowerBound + t), count: n * pool.kvWidth)
            t += n
        }
    }
}
