import CPaliGemmaKernels
import Foundation
import Testing
@testable import PaliGemma

/// The batched forward pass, paged KV caches and steppable generation.
///
/// Bound: a sequence run in a batch and alone goes through the same kernels, but a decoding
/// row alone takes the matrix-vector path (M <= 4 rows) and in a batch the blocked product, and
/// a paged cache splits the weighted sum of V into runs, so the two differ by float32 rounding
/// only: held to 2e-5 of max(1, |logit|), printed as the worst difference. With int8 weights,
/// x is quantized to int16 per row (a relative error of up to 1.5e-5 of the row's largest value)
/// on the matrix-vector path at every level but on the blocked path only from AVX2 up, so there
/// the bound is that step carried through the layers: 5e-4. With 4-bit weights, x is quantized
/// to int8 per group of 32, which is discontinuous: a float32-rounding difference upstream can
/// move a value across a rounding boundary (a step of 1/127 of its group's largest value), and
/// that step is carried through the layers: 5e-2, against 4-bit's own error of about 0.4 of the
/// logit range on these fixtures (Int4Tests).
struct BatchForwardTests {
    static let relativeBound: Float = 2e-5
    static func bound(_ q: Quantization) -> Float {
        switch q {
        case .none: return relativeBound
        case .int8: return 5e-4
        case .int4: return 5e-2
        }
    }

    // MARK: Kernel

    /// One sequence of a kernel test: T new rows at qStart, S keys after them, and its prefix.
    struct KernelSeq {
        let T: Int, S: Int, qStart: Int, prefix: Int
    }

    @Test("pg_attention_batch: sequences with their own paged caches, positions and prefixes, on every ISA level")
    func pagedKernel() {
        var rng = SeededRandom(23)
        // (Hq, Hkv, D, window, softcap, block tokens, sequences)
        let cases: [(Int, Int, Int, Int, Float, Int, [KernelSeq])] = [
            (4, 2, 16, 0, 0, 3, [KernelSeq(T: 9, S: 9, qStart: 0, prefix: 7), KernelSeq(T: 1, S: 14, qStart: 13, prefix: 10),
                                 KernelSeq(T: 3, S: 20, qStart: 17, prefix: 12)]),
            (8, 1, 32, 5, 2.5, 1, [KernelSeq(T: 1, S: 30, qStart: 29, prefix: 20), KernelSeq(T: 2, S: 6, qStart: 4, prefix: 4),
                                   KernelSeq(T: 12, S: 12, qStart: 0, prefix: 12)]),
            (4, 4, 24, 0, 0, 16, [KernelSeq(T: 40, S: 40, qStart: 0, prefix: 33), KernelSeq(T: 37, S: 300, qStart: 263, prefix: 270),
                                  KernelSeq(T: 1, S: 65, qStart: 64, prefix: 17), KernelSeq(T: 4, S: 50, qStart: 46, prefix: 20)]),
            (2, 1, 72, 40, 0, 64, [KernelSeq(T: 70, S: 600, qStart: 530, prefix: 560), KernelSeq(T: 1, S: 129, qStart: 128, prefix: 100)]),
            (6, 2, 16, 0, 3, 7, (0..<9).map { KernelSeq(T: 1 + $0 % 3, S: 20 + 5 * $0, qStart: 20 + 5 * $0 - 1 - $0 % 3, prefix: 15) }),
        ]
        var worst: Float = 0
        for level in KernelTests.levels {
            for (Hq, Hkv, D, window, softcap, block, seqs) in cases {
                let kvw = Hkv * D
                let blocksOf = seqs.map { ($0.S + block - 1) / block }
                let nblocks = blocksOf.reduce(0, +)
                // Block ids handed out in a scrambled order, so sequences interleave in the pool.
                var ids = Array(0..<Int32(nblocks))
                for i in stride(from: ids.count - 1, to: 0, by: -1) { ids.swapAt(i, Int(rng.next() % UInt64(i + 1))) }
                var poolK = [Float](repeating: .nan, count: nblocks * block * kvw), poolV = poolK
                var tables: [[Int32]] = [], keys: [[Float]] = [], vals: [[Float]] = [], qs: [[Float]] = []
                var next = 0
                for (i, s) in seqs.enumerated() {
                    let table = Array(ids[next..<next + blocksOf[i]])
                    next += blocksOf[i]
                    let k = rng.floats(s.S * kvw), v = rng.floats(s.S * kvw)
                    for j in 0..<s.S {
                        let row = Int(table[j / block]) * block + j % block
                        for c in 0..<kvw {
                            poolK[row * kvw + c] = k[j * kvw + c]
                            poolV[row * kvw + c] = v[j * kvw + c]
                        }
                    }
                    tables.append(table)
                    keys.append(k)
                    vals.append(v)
                    qs.append(rng.floats(s.T * Hq * D))
                }
                let q = qs.flatMap { $0 }
                var out = [Float](repeating: .nan, count: q.count)
                let scale = 2 / Float(D).squareRoot()
                let flatTables = tables.flatMap { $0 }
                q.withUnsafeBufferPointer { qp in
                    poolK.withUnsafeBufferPointer { kp in
                        poolV.withUnsafeBufferPointer { vp in
                            flatTables.withUnsafeBufferPointer { tp in
                                out.withUnsafeMutableBufferPointer { op in
                                    var row0 = 0, t0 = 0
                                    var descriptors: [pg_attn_seq] = []
                                    for (i, s) in seqs.enumerated() {
                                        descriptors.append(pg_attn_seq(row0: row0, T: s.T, S: s.S, q_start: s.qStart, prefix: s.prefix,
                                                                       k: kp.baseAddress, v: vp.baseAddress,
                                                                       block_table: tp.baseAddress.map { $0 + t0 }, block_tokens: block))
                                        row0 += s.T
                                        t0 += tables[i].count
                                    }
                                    descriptors.withUnsafeBufferPointer { d in
                                        pg_attention_batch_isa(Int32(level.rawValue), qp.baseAddress, Hq * D, op.baseAddress, Hq * D,
                                                               d.baseAddress, d.count, kvw, Int32(Hq), Int32(Hkv), Int32(D), window,
                                                               scale, softcap)
                                    }
                                }
                            }
                        }
                    }
                }
                var row0 = 0
                for (i, s) in seqs.enumerated() {
                    let want = KernelTests.referenceAttention(q: qs[i], k: keys[i], v: vals[i], T: s.T, S: s.S, Hq: Hq, Hkv: Hkv, D: D,
                                                              qStart: s.qStart, prefix: s.prefix, window: window, scale: scale,
                                                              softcap: softcap)
                    let got = Array(out[(row0 * Hq * D)..<((row0 + s.T) * Hq * D)])
                    let (d, at) = maxAbsDiff(got, want)
                    worst = max(worst, d)
                    #expect(d <= 1e-5, "\(level.name) block \(block) seq \(i) T\(s.T) S\(s.S) start\(s.qStart) prefix\(s.prefix): \(d) at \(at)")
                    row0 += s.T
                }
            }
        }
        print("pg_attention_batch: worst |diff| vs float64 reference \(worst)")
    }

    // MARK: Model

    /// A random request for a fixture model: a prompt of image tokens, <bos> and a few text ids,
    /// then continuation ids fed in chunks of 1 to 3.
    struct Plan {
        let features: Matrix
        let prompt: [Int]
        let chunks: [[Int]]
        var total: Int { prompt.count + chunks.reduce(0) { $0 + $1.count } }
    }

    static func plans(_ model: PaliGemmaModel, count: Int, rng: inout SeededRandom) throws -> [Plan] {
        let vocab = model.decoder.vocabRows, image = model.config.imageTokenIndex
        func textID() -> Int {
            while true {
                let id = 3 + Int(rng.next() % UInt64(vocab - 3))
                if id != image { return id }
            }
        }
        return try (0..<count).map { _ in
            let features = try model.imageFeatures(pixels: rng.floats(model.pixelCount))
            let prompt = [Int](repeating: image, count: model.config.numImageTokens) + [2]
                + (0..<(1 + Int(rng.next() % 6))).map { _ in textID() }
            let chunks = (0..<Int(rng.next() % 5)).map { _ in (0..<(1 + Int(rng.next() % 3))).map { _ in textID() } }
            return Plan(features: features, prompt: prompt, chunks: chunks)
        }
    }

    /// Logits of every chunk (the prompt first) of a plan run alone in a cache of its own.
    static func alone(_ model: PaliGemmaModel, _ plan: Plan) throws -> [[Float]] {
        let cache = try model.makeCache(capacity: plan.total)
        var out = [try model.forward(ids: plan.prompt, imageFeatures: plan.features, prefixLength: plan.prompt.count,
                                     cache: cache, logits: .all).values]
        for chunk in plan.chunks {
            out.append(try model.forward(ids: chunk, imageFeatures: nil, prefixLength: plan.prompt.count, cache: cache,
                                         logits: .all).values)
        }
        return out
    }

    static func relativeDiff(_ a: [Float], _ b: [Float]) -> Float {
        let (d, _) = maxAbsDiff(a, b)
        return d / max(1, b.map(abs).max() ?? 0)
    }

    @Test("batched forward: random mixes of 1 to 8 sequences (prefill, decode and chunks together) equal each sequence alone, every ISA level",
          arguments: ModelParityTests.names.map { ($0, Quantization.none) } + [("pg1-f32", .int8), ("pg2-f32", .int4)])
    func batchedEqualsAlone(name: String, quantization: Quantization) throws {
        let model = try PaliGemmaModel(directory: Fixtures.model(name), quantization: quantization)
        var rng = SeededRandom(UInt64(name.utf8.reduce(7) { $0 &* 31 &+ Int($1) }))
        var worst: Float = 0
        for level in KernelTests.levels {
            var worstHere: Float = 0
            defer { print("[\(name), \(quantization)] \(level.name): worst \(worstHere)") }
            try Kernels.withISA(level) {
                for trial in 0..<3 {
                    let count = trial == 0 ? 1 : 2 + Int(rng.next() % 7)
                    let plans = try Self.plans(model, count: count, rng: &rng)
                    let want = try plans.map { try Self.alone(model, $0) }
                    // One shared pool of small blocks, exactly as large as the plans need.
                    let blockTokens = 3
                    let t = model.config.textConfig
                    let pool = try KVCachePool(layers: t.numHiddenLayers, kvWidth: t.numKeyValueHeads * t.headDim,
                                               blockTokens: blockTokens,
                                               blockCount: plans.reduce(0) { $0 + ($1.total + blockTokens - 1) / blockTokens })
                    var caches = try plans.map { _ in try pool.makeCache() }
                    var done = [Int](repeating: 0, count: count)  // chunks fed (the prompt is chunk 0)
                    while done.enumerated().contains(where: { $0.element <= plans[$0.offset].chunks.count }) {
                        // A random subset of the unfinished sequences, in a random order.
                        var members = (0..<count).filter { done[$0] <= plans[$0].chunks.count && rng.next() % 3 != 0 }
                        if members.isEmpty, let first = (0..<count).first(where: { done[$0] <= plans[$0].chunks.count }) {
                            members = [first]
                        }
                        members.shuffle(using: &rng)
                        let inputs = members.map { i -> SequenceInput in
                            let p = plans[i]
                            return done[i] == 0
                                ? SequenceInput(ids: p.prompt, imageFeatures: p.features, prefixLength: p.prompt.count, cache: caches[i], logits: .all)
                                : SequenceInput(ids: p.chunks[done[i] - 1], prefixLength: p.prompt.count, cache: caches[i], logits: .all)
                        }
                        let logits = try model.forward(inputs)
                        for (i, l) in zip(members, logits) {
                            let d = Self.relativeDiff(l.values, want[i][done[i]])
                            worst = max(worst, d)
                            worstHere = max(worstHere, d)
                            #expect(d <= Self.bound(quantization), "\(name) \(level.name) trial \(trial) seq \(i) chunk \(done[i]): \(d)")
                            done[i] += 1
                        }
                    }
                    #expect(pool.freeBlocks == 0)
                    caches.removeAll()
                    #expect(pool.freeBlocks == pool.blockCount, "every block back in the pool")
                }
            }
        }
        print("[\(name), \(quantization)] batched vs alone: worst |diff| / max(1, |logit|) \(worst) (bound \(Self.bound(quantization)))")
    }

    @Test("fast precision: a sequence's decode steps give the same bits alone as batched with up to 7 others, where decode runs on vdpbf16ps",
          arguments: ModelParityTests.names)
    func fastDecodeAloneEqualsBatched(name: String) throws {
        // One-row and batched decode share gemv_bf16_quads' accumulation order at fast precision,
        // so a served request's tokens do not depend on how many others share its steps.
        let bf16 = Kernels.fastKernelInUse != .none && Kernels.features.contains("avx512-bf16")
        let model = try PaliGemmaModel(directory: Fixtures.model(name))
        var rng = SeededRandom(31)
        let count = 8, steps = 4
        let plans = try Self.plans(model, count: count, rng: &rng)
        let ids = (0..<count).map { _ in (0..<steps).map { _ in 3 + Int(rng.next() % UInt64(model.decoder.vocabRows - 3)) } }
            .map { $0.map { $0 == model.config.imageTokenIndex ? 3 : $0 } }
        var alone = [[[Float]]](), together = [[[Float]]](repeating: [], count: count)
        var exactDiff: Float = 0
        try Kernels.withPrecision(.fast) {
            // Alone: each sequence's prompt, then its steps one at a time.
            for (i, p) in plans.enumerated() {
                let cache = try model.makeCache(capacity: p.prompt.count + steps)
                _ = try model.forward(ids: p.prompt, imageFeatures: p.features, prefixLength: p.prompt.count, cache: cache)
                alone.append(try ids[i].map { id in
                    try model.forward(ids: [id], imageFeatures: nil, prefixLength: p.prompt.count, cache: cache).values
                })
            }
            // Together: the same prompts, then every step of 1 to 8 of them in one forward (sequence
            // i joins from step 0 only if i < the batch's size for that step, so the sizes vary).
            let caches = try plans.map { try model.makeCache(capacity: $0.prompt.count + steps) }
            for (p, cache) in zip(plans, caches) {
                _ = try model.forward(ids: p.prompt, imageFeatures: p.features, prefixLength: p.prompt.count, cache: cache)
            }
            var next = [Int](repeating: 0, count: count)
            for round in 0..<(steps * count) {
                let members = (0..<count).filter { next[$0] < steps && ($0 + round) % 3 != 0 }
                guard !members.isEmpty else { continue }
                let inputs = members.map {
                    SequenceInput(ids: [ids[$0][next[$0]]], prefixLength: plans[$0].prompt.count, cache: caches[$0])
                }
                for (i, l) in zip(members, try model.forward(inputs)) {
                    together[i].append(l.values)
                    next[i] += 1
                }
            }
            for i in 0..<count where next[i] < steps {  // stragglers, alone
                while next[i] < steps {
                    together[i].append(try model.forward(ids: [ids[i][next[i]]], imageFeatures: nil,
                                                         prefixLength: plans[i].prompt.count, cache: caches[i]).values)
                    next[i] += 1
                }
            }
        }
        for i in 0..<count {
            for t in 0..<steps {
                exactDiff = max(exactDiff, Self.relativeDiff(together[i][t], alone[i][t]))
                if bf16 {
                    #expect(together[i][t] == alone[i][t], "\(name) seq \(i) step \(t): batched bits differ from alone")
                } else {
                    #expect(Self.relativeDiff(together[i][t], alone[i][t]) <= Self.bound(.none), "\(name) seq \(i) step \(t)")
                }
            }
        }
        print("[\(name)] fast decode, batched vs alone (\(bf16 ? "vdpbf16ps: bit for bit" : "no AVX512-BF16: within the bound")): worst \(exactDiff)")
    }

    @Test("batched forward refuses bad batches and changes nothing")
    func refusals() throws {
        let model = try PaliGemmaModel(directory: Fixtures.model("pg2-f32"))
        var rng = SeededRandom(3)
        let plan = try Self.plans(model, count: 1, rng: &rng)[0]
        let cache = try model.makeCache(capacity: plan.prompt.count)
        func error(_ inputs: [SequenceInput]) -> String {
            do { _ = try model.forward(inputs); return "" } catch { return "\(error)" }
        }
        let prompt = SequenceInput(ids: plan.prompt, imageFeatures: plan.features, prefixLength: plan.prompt.count, cache: cache)
        #expect(error([prompt, prompt]).contains("same KV cache appears twice"))
        #expect(error([SequenceInput(ids: [], prefixLength: 0, cache: cache)]).contains("at least one token"))
        // The cache's own pool holds the prompt rounded up to whole blocks: a block more does not fit.
        let other = try model.makeCache(capacity: 4)
        _ = try model.forward([prompt])
        let e = error([SequenceInput(ids: [5], prefixLength: plan.prompt.count, cache: other),
                       SequenceInput(ids: [Int](repeating: 5, count: KVCachePool.defaultBlockTokens), prefixLength: plan.prompt.count, cache: cache)])
        #expect(e.contains("KV cache pool is full"), "\(e)")
        #expect(cache.length == plan.prompt.count && other.length == 0)
        let wrong = try KVCache(layers: 1, capacity: 8, kvWidth: 4)
        #expect(error([SequenceInput(ids: [5], prefixLength: 0, cache: wrong)]).contains("another decoder shape"))
    }

    @Test("a copied KV cache continues the prompt as the original does (other pool, other block size); shapes checked")
    func cacheCopy() throws {
        let model = try PaliGemmaModel(directory: Fixtures.model("pg2-f32"))
        var rng = SeededRandom(29)
        let plan = try Self.plans(model, count: 1, rng: &rng)[0]
        let original = try model.makeCache(capacity: plan.prompt.count + 1)
        _ = try model.forward(ids: plan.prompt, imageFeatures: plan.features, prefixLength: plan.prompt.count, cache: original)
        let t = model.config.textConfig
        let pool = try KVCachePool(layers: t.numHiddenLayers, kvWidth: t.numKeyValueHeads * t.headDim, blockTokens: 5, blockCount: 200)
        _ = try pool.makeCache(reserving: 7)  // so the copy's blocks are not the pool's first
        let copy = try pool.makeCache()
        try copy.copy(from: original)
        #expect(copy.length == original.length)
        let next = 3 + Int(rng.next() % 100)
        let a = try model.forward(ids: [next], imageFeatures: nil, prefixLength: plan.prompt.count, cache: original).values
        let b = try model.forward(ids: [next], imageFeatures: nil, prefixLength: plan.prompt.count, cache: copy).values
        let diff = Self.relativeDiff(b, a)
        print("copied cache vs original, next step: worst |diff| / max(1, |logit|) \(diff) (bound \(Self.relativeBound))")
        #expect(diff <= Self.relativeBound)
        let wrong = try KVCache(layers: 1, capacity: 8, kvWidth: 4)
        #expect(throws: PaliGemmaError.self) { try wrong.copy(from: original) }
    }

    // MARK: Cache pool

    @Test("KV cache pool: bounded, blocks reused, bytes per token of PaliGemma 1 and 2 3B")
    func pool() throws {
        let pool = try KVCachePool(layers: 2, kvWidth: 8, blockTokens: 4, blockCount: 5)
        #expect(pool.bytesPerToken == 2 * 2 * 8 * 4 && pool.byteCapacity == 5 * 4 * pool.bytesPerToken)
        var a: KVCache? = try pool.makeCache(reserving: 9)  // 3 blocks
        #expect(a?.capacity == 12 && pool.freeBlocks == 2)
        let b = try pool.makeCache(reserving: 8)
        #expect(b.blocks.count == 2 && pool.freeBlocks == 0)
        #expect(throws: PaliGemmaError.self) { try pool.makeCache(reserving: 1) }
        a = nil  // its blocks go back
        #expect(pool.freeBlocks == 3)
        b.release()
        #expect(pool.freeBlocks == 5 && b.capacity == 0)
        #expect(throws: PaliGemmaError.self) { try KVCachePool(layers: 1, kvWidth: 1, blockTokens: 0, blockCount: 1) }

        let pg1 = try Presets.config("paligemma-3b-224"), pg2 = try Presets.config("paligemma2-3b-224")
        #expect(pg1.kvBytesPerToken == 36_864)  // 18 layers · 2 · 1 head · 256 · 4 bytes
        #expect(pg2.kvBytesPerToken == 212_992)  // 26 layers · 2 · 4 heads · 256 · 4 bytes
        print("KV cache bytes per token: PaliGemma 1 \(pg1.kvBytesPerToken), PaliGemma 2 3B \(pg2.kvBytesPerToken)")
    }

    @Test("KV cache pool: a block's pages go back to the system when it is freed, and read as zero when taken again")
    func poolGivesPagesBack() throws {
        // 64 tokens of 128 floats: a block is 32 KB, whole pages, in each of the 2·2 arenas.
        let pool = try KVCachePool(layers: 2, kvWidth: 128, blockTokens: 64, blockCount: 6)
        let rows = Matrix(rows: 128, cols: 128)
        for i in 0..<rows.count { rows.data[i] = Float(i % 97) + 1 }
        var cache: KVCache? = try pool.makeCache(reserving: 128)  // 2 blocks
        let held = try #require(cache?.blocks)
        for layer in 0..<2 { cache?.store(layer: layer, start: 0, keys: rows, values: rows, rows: 0..<128) }
        #expect(cache?.keys(layer: 1, token: 127)[5] == rows.row(127)[5])
        let other = try pool.makeCache(reserving: 64)  // a third block, written and kept
        other.store(layer: 0, start: 0, keys: rows, values: rows, rows: 0..<64)
        cache = nil
        // The same blocks again (the free list is last in, first out): zero, as fresh pages are.
        let again = try pool.makeCache(reserving: 128)
        #expect(Set(again.blocks) == Set(held))
        var nonzero = 0
        for layer in 0..<2 {
            for token in 0..<128 {
                for c in 0..<128 where again.keys(layer: layer, token: token)[c] != 0 || again.values(layer: layer, token: token)[c] != 0 {
                    nonzero += 1
                }
            }
        }
        #if os(Linux)  // MADV_DONTNEED empties private anonymous pages there; elsewhere it is advice
        #expect(nonzero == 0, "\(nonzero) values of freed blocks kept")
        #endif
        // A block still held keeps what was written.
        #expect(other.keys(layer: 0, token: 63)[7] == rows.row(63)[7] && other.values(layer: 0, token: 0)[0] == rows.row(0)[0])
    }

    // MARK: Steppable generation

    @Test("TokenGenerators stepped together through one batched forward give each request's own tokens",
          arguments: ["pg1-f32", "pg2-f32"])
    func steppedGeneration(name: String) throws {
        let model = try PaliGemmaModel(directory: Fixtures.model(name))
        var rng = SeededRandom(41)
        let plans = try Self.plans(model, count: 5, rng: &rng)
        let options = plans.indices.map { i in
            GenerationOptions(maxNewTokens: 2 + i * 2,
                              sampling: i % 2 == 0 ? .greedy : SamplingOptions(temperature: 0.8, topK: 20, seed: UInt64(i)),
                              stopTokens: [])
        }
        let want = try plans.indices.map { i in
            try model.generate(promptIDs: plans[i].prompt, imageFeatures: plans[i].features, options: options[i]).tokens
        }
        let pool = try model.makeCachePool(tokens: plans.indices.reduce(0) { $0 + plans[$1].prompt.count + options[$1].maxNewTokens },
                                           blockTokens: 5)
        // Requests join one after another, as in a server: request i starts at step i.
        var generators: [TokenGenerator] = []
        var steps = 0
        while generators.count < plans.count || generators.contains(where: { !$0.isFinished }) {
            if generators.count < plans.count {
                let i = generators.count
                generators.append(try TokenGenerator(model: model, promptIDs: plans[i].prompt, imageFeatures: plans[i].features,
                                                     options: options[i], pool: pool))
            }
            try model.step(generators)
            steps += 1
            #expect(steps < 100)
        }
        for (i, g) in generators.enumerated() {
            #expect(g.tokens == want[i], "\(name) request \(i)")
            #expect(g.stopReason == .maxTokens)
        }
        #expect(pool.freeBlocks == pool.blockCount, "finished generators give their blocks back")

        // Cancelling one request leaves the others alone.
        let g1 = try TokenGenerator(model: model, promptIDs: plans[0].prompt, imageFeatures: plans[0].features, options: options[4], pool: pool)
        let g2 = try TokenGenerator(model: model, promptIDs: plans[1].prompt, imageFeatures: plans[1].features, options: options[1], pool: pool)
        try model.step([g1, g2])
        g1.cancel()
        #expect(g1.stopReason == .cancelled && g1.nextInput() == nil && g1.tokens.count == 1)
        while !g2.isFinished { try model.step([g1, g2]) }
        #expect(g2.tokens == want[1])
        #expect(pool.freeBlocks == pool.blockCount)
    }
}
extension BatchForwardTests {
    @Test("README's library example: stepped requests with detokenizers give the pipeline's answers")
    func readmeExample() throws {
        let pipeline = try PaliGemmaPipeline(directory: Fixtures.model("e2e-pg1"))
        let image = try ImageDecoder.decode(contentsOf: Fixtures.root.appendingPathComponent("e2e/images/scene.jpg"))
        let prompts = ["caption en", "ocr", "answer en what is this?"]
        let options = GenerationOptions(maxNewTokens: 12, stopTokens: [pipeline.eosID])
        let want = try prompts.map { try pipeline.generate(image: image, prompt: $0, options: options) }
        let model = pipeline.model
        let pool = try model.makeCachePool(tokens: 8 * 400)
        let requests = try prompts.map { prompt in
            try TokenGenerator(model: model, promptIDs: pipeline.promptIDs(prompt),
                               imageFeatures: model.imageFeatures(pixels: pipeline.pixelValues(image)),
                               options: options, pool: pool, detokenizer: pipeline.tokenizer.streamingDecoder())
        }
        while requests.contains(where: { !$0.isFinished }) { try model.step(requests) }
        #expect(requests.map(\.text) == want.map(\.text))
        #expect(requests.map(\.tokens) == want.map(\.tokens))
        #expect(pool.freeBlocks == pool.blockCount)
    }
}

extension SeededRandom: RandomNumberGenerator {}
