import CPaliGemmaKernels
import Foundation
import Testing
@testable import PaliGemma

/// 4-bit weights (`MatrixWeight.int4`, the kernels' PG_Q4): the quantizer's layout and rounding,
/// the decode and prefill kernels against a float64 reference of the dequantized matrix on every
/// ISA level, and the accuracy cost on the parity fixtures (measured and bounded).
struct Int4Tests {
    static let group = MatrixWeight.int4Group

    @Test("pg_quantize_q4 layout: low nibble value j, high nibble value j + 16, stored as q + 8")
    func layout() throws {
        // One group whose values are the 16 levels twice: m = -8 gives scale 1, so q = value.
        let values = (0..<32).map { Float($0 % 16) - 8 }
        let w = Ops.quantizeInt4(Tensor(values: values, shape: [1, 32]))
        guard case .int4(let packed, let scales) = w else { Issue.record("not int4"); return }
        #expect(packed.shape == [1, 16] && packed.dtype == .uint8)
        #expect(scales.shape == [1, 1] && scales.dtype == .float16)
        #expect(scales.floats() == [1])
        #expect(packed.ints() == (0..<16).map { $0 | ($0 << 4) })
        #expect(w.floats() == values)
        #expect(w.rows == 1 && w.cols == 32 && w.byteCount == 18)

        // A full block of 8 groups, in the block layout of pg_kernels.h (PG_Q4_GROUP). Every
        // group holds -8 and nothing above 7: scale 1.
        func v(_ q: Int, _ i: Int) -> Int { (i + q) % 16 - 8 }
        let block = (0..<256).map { Float(v($0 / 32, $0 % 32)) }
        let b = Ops.quantizeInt4(Tensor(values: block, shape: [1, 256]))
        guard case .int4(let bp, let bs) = b else { Issue.record("not int4"); return }
        #expect(bs.floats() == [Float](repeating: 1, count: 8))
        var want = [Int](repeating: -1, count: 128)
        for j in 0..<4 { for q in 0..<8 { for t in 0..<4 {
            want[32 * j + 4 * q + t] = (v(q, 4 * j + t) + 8) | ((v(q, 16 + 4 * j + t) + 8) << 4)
        } } }
        #expect(bp.ints() == want)
        #expect(b.floats() == block)
    }

    @Test("pg_quantize_q4 keeps every value within one step (half a step unless clamped at +7), the largest exactly")
    func quantize() {
        var rng = SeededRandom(41)
        let rows = 9, cols = 7 * Self.group
        var w = rng.floats(rows * cols).map { $0 * 3 }
        for c in 0..<Self.group { w[2 * cols + c] = 0 }  // a group of zeros
        w[4 * cols + 5] = 1e6  // beyond float16's range: the scale saturates
        let q = Ops.quantizeInt4(Tensor(values: w, shape: [rows, cols]))
        guard case .int4(_, let scaleTensor) = q else { Issue.record("not int4"); return }
        let scales = scaleTensor.floats()
        let back = q.floats()
        var worst: Float = 0, halfStepViolations = 0
        for r in 0..<rows {
            for g in 0..<(cols / Self.group) {
                let idx = (0..<Self.group).map { r * cols + g * Self.group + $0 }
                let s = abs(scales[r * (cols / Self.group) + g])
                if idx.allSatisfy({ w[$0] == 0 }) {
                    #expect(s == 0 && idx.allSatisfy { back[$0] == 0 })
                    continue
                }
                if r == 4 && g == 0 { #expect(s == 65504); continue }
                let m = idx.max { abs(w[$0]) < abs(w[$1]) }!
                #expect(abs(back[m] - w[m]) <= abs(w[m]) * 1e-3, "largest value of the group \(g) of row \(r)")
                for i in idx {
                    let err = abs(back[i] - w[i]) / s
                    worst = max(worst, err)
                    if err > 0.5 + 1e-3 { halfStepViolations += 1 }
                    #expect(err <= 1 + 1e-3, "row \(r), column \(i - r * cols): \(back[i]) vs \(w[i]) (step \(s))")
                }
            }
        }
        print("int4 quantization: worst error \(worst) steps, \(halfStepViolations) values clamped at +7")
        #expect(halfStepViolations <= rows * cols / 20)
    }

    @Test("every ISA level quantizes to the same bytes and scales (4-bit and int8), NaN, ties and zeros included")
    func quantizersAgreeAcrossLevels() {
        var rng = SeededRandom(43)
        let rows = 12, cols = 17 * Self.group  // 17 groups: two full 4-bit blocks of 8 and a tail group
        var w = rng.floats(rows * cols)
        for c in 0..<cols { w[cols + c] = 0 }                        // a zero row
        w[2 * cols + 3] = .nan                                      // a NaN (its group / row goes the scalar way)
        w[3 * cols + 5] = 1e9                                       // beyond float16 (4-bit scale saturates)
        for c in 0..<cols { w[4 * cols + c] = Float(c % 3) - 1 }    // ties of the largest magnitude, both signs
        for c in 0..<cols { w[5 * cols + c] = Float(c % 5) * 0.25 - 0.5 }  // values on rounding ties
        var packed: [[UInt8]] = [], scales4: [[UInt16]] = [], bytes8: [[Int8]] = [], scales8: [[Float]] = []
        for level in KernelTests.levels {
            var p = [UInt8](repeating: 0, count: rows * cols / 2), s4 = [UInt16](repeating: 0, count: rows * cols / Self.group)
            var q = [Int8](repeating: 0, count: rows * cols), s8 = [Float](repeating: 0, count: rows)
            w.withUnsafeBytes { wp in
                pg_quantize_q4_isa(Int32(level.rawValue), wp.baseAddress, Int32(PG_F32.rawValue), rows, cols, &p, &s4)
                pg_quantize_q8_isa(Int32(level.rawValue), wp.baseAddress, Int32(PG_F32.rawValue), rows, cols, &q, &s8)
            }
            packed.append(p); scales4.append(s4); bytes8.append(q); scales8.append(s8.map { $0.isNaN ? -1 : $0 })
        }
        print("quantizers compared on levels \(KernelTests.levels.map(\.name))")
        for i in packed.indices.dropFirst() {
            #expect(packed[i] == packed[0] && scales4[i] == scales4[0], "4-bit: \(KernelTests.levels[i].name) differs from scalar")
            #expect(bytes8[i] == bytes8[0] && scales8[i] == scales8[0], "int8: \(KernelTests.levels[i].name) differs from scalar")
        }
    }

    /// Runs pg_linear_q4_isa on `level`.
    static func linear(_ level: ISA, x: [Float], w: MatrixWeight, bias: [Float]?, m: Int) -> [Float] {
        guard case .int4(let packed, let scales) = w, let p = packed.pointer, let s = scales.pointer else { return [] }
        let (n, k) = (w.rows, w.cols)
        var y = [Float](repeating: .nan, count: m * n)
        let b = bias ?? []
        x.withUnsafeBufferPointer { xp in
            b.withUnsafeBufferPointer { bp in
                y.withUnsafeMutableBufferPointer { yp in
                    pg_linear_q4_isa(Int32(level.rawValue), xp.baseAddress, k, p.assumingMemoryBound(to: UInt8.self),
                                     s.assumingMemoryBound(to: UInt16.self), bias == nil ? nil : bp.baseAddress,
                                     yp.baseAddress, n, m, n, k)
                }
            }
        }
        return y
    }

    @Test("pg_linear_q4 on every ISA level, decode and prefill (x quantized per group: bounded)")
    func linearInt4() {
        var rng = SeededRandom(42)
        var worst: Float = 0  // largest error as a share of its bound
        // Groups: 1 and 3 (no full block of 8), 8 and 16 (blocks only), 11 and 72 (blocks and a
        // tail), 512; prefill with ragged rows (M % 4 != 0, and above 8 rows M % 3 != 0 for the
        // VNNI tile) and columns, and more weight rows than one L2 block (40 x 130 x 256 is below
        // it; 5 and 9 x 40 x 16384 above: 28 rows of 16384).
        let shapes = [(1, 17, 32), (1, 33, 96), (2, 9, 256), (1, 40, 352), (3, 20, 512), (4, 7, 2304), (1, 5, 16_384),
                      (5, 45, 32), (7, 70, 96), (13, 37, 352), (11, 38, 352), (40, 130, 256), (5, 40, 16_384),
                      (9, 40, 16_384)]
        for level in KernelTests.levels {
            for (m, n, k) in shapes {
                var x = rng.floats(m * k)
                x[k / 2] = 9  // an outlier: its group's x step follows it
                let wf = rng.floats(n * k).map { $0 * 2 }
                let w = Ops.quantizeInt4(Tensor(values: wf, shape: [n, k]))
                let dq = w.floats()
                let bias: [Float]? = n % 2 == 1 ? rng.floats(n) : nil
                let y = Self.linear(level, x: x, w: w, bias: bias, m: m)
                for i in 0..<m {
                    for j in 0..<n {
                        var dot = Double(bias?[j] ?? 0), mag = 0.0, xerr = 0.0
                        for g in 0..<(k / Self.group) {
                            let r = (g * Self.group)..<((g + 1) * Self.group)
                            // Each group of x is quantized to int8: every x moves by at most half a step.
                            let step = Double(r.map { abs(x[i * k + $0]) }.max() ?? 0) / 127
                            for t in r {
                                let p = Double(x[i * k + t]) * Double(dq[j * k + t])
                                dot += p
                                mag += abs(p)
                                xerr += 0.5 * step * abs(Double(dq[j * k + t]))
                            }
                        }
                        let err = Float(abs(Double(y[i * n + j]) - dot))
                        let bound = Float(mag * 2e-6 + xerr * 1.001) + 1e-5
                        worst = max(worst, err / bound)
                        #expect(err <= bound, "\(level.name) m\(m) n\(n) k\(k): \(y[i * n + j]) vs \(dot) (bound \(bound))")
                    }
                }
            }
        }
        print("pg_linear_q4: worst |diff| = \(worst) of its bound")
    }

    /// VNNI extensions this CPU has, each alone (the kernels prefer AVX-VNNI when both exist).
    static var vnniVariants: [Set<String>] {
        [["avx-vnni"], ["avx512-vnni"]].filter { $0.isSubset(of: Set(Kernels.features)) }
    }

    @Test("pg_linear_q4 with VNNI (vpdpbusd) gives exactly the AVX2 kernel's results, decode and prefill")
    func linearInt4VNNI() {
        var rng = SeededRandom(43)
        print("4-bit VNNI variants run here: \(Self.vnniVariants.map { $0.sorted() })")
        // Prefill (more than 8 rows) runs tiles of 3 weight rows by 3 rows of x with AVX512-VNNI:
        // 13 x 37 and 11 x 38 leave 1 and 2 of each over.
        let shapes = [(1, 17, 32), (1, 33, 352), (3, 20, 512), (4, 7, 2304), (5, 45, 96), (13, 37, 352), (11, 38, 352),
                      (40, 130, 256)]
        for (m, n, k) in shapes {
            var x = rng.floats(m * k)
            x[k / 2] = 9
            let w = Ops.quantizeInt4(Tensor(values: rng.floats(n * k).map { $0 * 2 }, shape: [n, k]))
            let plain = Kernels.withFeatures([]) { Self.linear(.avx2, x: x, w: w, bias: nil, m: m) }
            for variant in Self.vnniVariants {
                let y = Kernels.withFeatures(variant) { Self.linear(.avx2, x: x, w: w, bias: nil, m: m) }
                #expect(y == plain, "\(variant.sorted()) m\(m) n\(n) k\(k) differs from AVX2")
            }
        }
    }

    @Test("pg_linear_q4 in fast precision: each value q · scale rounded to bf16, on each bf16 kernel")
    func linearInt4Fast() {
        var rng = SeededRandom(44)
        var worst = 0.0
        // Whole blocks of 8 groups and a tail (11 groups), several depth chunks (16384), ragged rows and columns.
        for kernel in KernelTests.fastKernels {
            let features: Set<String> = kernel == .amx ? Set(Kernels.features) : ["avx512-bf16"]
            for (m, n, k) in [(5, 45, 32), (13, 37, 352), (40, 130, 256), (9, 33, 16_384)] {
                let x = rng.floats(m * k)
                let w = Ops.quantizeInt4(Tensor(values: rng.floats(n * k).map { $0 * 2 }, shape: [n, k]))
                let dq = w.floats().map(pg_bf16_round), xr = x.map(pg_bf16_round)
                let bias = rng.floats(n)
                let y = Kernels.withFeatures(features) { Kernels.withPrecision(.fast) { Self.linear(.avx512, x: x, w: w, bias: bias, m: m) } }
                for i in 0..<m {
                    for j in 0..<n {
                        var dot = Double(bias[j]), mag = abs(dot)
                        for t in 0..<k {
                            dot += Double(xr[i * k + t]) * Double(dq[j * k + t])
                            mag += abs(Double(xr[i * k + t]) * Double(dq[j * k + t]))
                        }
                        let err = abs(Double(y[i * n + j]) - dot), bound = mag * 2e-6 + 1e-6
                        worst = max(worst, err / bound)
                        if !(err <= bound) {
                            Issue.record("\(kernel.name) m\(m) n\(n) k\(k): y[\(i),\(j)] = \(y[i * n + j]), want \(dot)")
                            return
                        }
                    }
                }
            }
        }
        print("pg_linear_q4 fast: worst |diff| = \(worst) of its bound on \(KernelTests.fastKernels.map(\.name))")
    }

    @Test("pg_linear_q4 decode: extreme nibbles and x do not overflow the 16-bit pair sums")
    func extremes() {
        // Every weight at q = 7 (nibble 15) or q = -8 (nibble 0), every x at the top of its range.
        let k = 16_384 + 96, n = 3
        for level in KernelTests.levels {
            for q: Float in [7, -8] {
                // m = -8 fixes the scale at 1; the rest of each group is q.
                var wf = [Float](repeating: q, count: n * k)
                for i in stride(from: 0, to: n * k, by: Self.group) { wf[i] = -8 }
                let w = Ops.quantizeInt4(Tensor(values: wf, shape: [n, k]))
                for (m, sign) in [(1, Float(1)), (4, -1), (9, 1)] {
                    let x = [Float](repeating: 5 * sign, count: m * k)
                    let y = Self.linear(level, x: x, w: w, bias: nil, m: m)
                    let want = 5 * sign * (Float(k / Self.group) * (31 * q - 8))
                    for v in y { #expect(abs(v - want) <= abs(want) * 1e-5, "\(level.name) q\(q) m\(m): \(v) vs \(want)") }
                }
            }
        }
    }

    /// Fixtures whose decoder matrices all have input sizes that are multiples of 32.
    static let fixtures = ["pg1-f32", "pg2-f32"]

    @Test("int4 decoder on the parity fixtures: logits near, greedy tokens mostly kept", arguments: Int4Tests.fixtures)
    func accuracy(name: String) throws {
        #expect(try PaliGemmaModel(directory: Fixtures.model(name), quantization: .int4).weightFormat == .int4Quantized)
        let r = try QuantizationTests.promptAgreement(name, .int4)
        #expect(r.diff <= 0.4 * r.range, "\(name): int4 logits differ by \(r.diff)")
        #expect(r.agree * 10 >= r.rows * 6, "\(name): top-1 agrees on only \(r.agree) of \(r.rows) positions")
    }

    @Test("int4 follows the float model that holds the dequantized weights (wiring), not the original weights",
          arguments: Int4Tests.fixtures)
    func matchesDequantizedFloatModel(name: String) throws {
        // A float32 folder whose int4-covered matrices hold their dequantized values; the tied
        // output projection becomes an untied lm_head (the int4 model keeps looking up the
        // stored embedding). The int4 model differs from it only by quantizing x per group to
        // int8 (half a step of 1/127 of the group's largest value); a matrix left unquantized or
        // quantized twice, or a lookup of the quantized embedding, moves it further (leaving one
        // MLP matrix unquantized here measured 0.26 and 0.42).
        let source = try Checkpoint(directory: Fixtures.model(name))
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("int4-dequantized-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        var replaced: [String: (shape: [Int], values: [Float])] = [:]
        for t in try PaliGemmaModel.quantizableMatrices(config: source.config) {
            let src = try #require(try source.tensor(canonical: t.source))
            replaced[t.name] = (t.shape, Ops.quantizeInt4(src).floats())
        }
        var items: [SafetensorsWriter.Item] = try source.tensorNames.filter { replaced[$0] == nil }.map { n in
            let t = try #require(try source.tensor(canonical: n))
            return .float32(n, shape: t.shape, t.floats())
        }
        items += replaced.map { .float32($0.key, shape: $0.value.shape, $0.value.values) }
        try SafetensorsWriter.write(items, to: dir.appendingPathComponent("model.safetensors"))
        var config = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: source.directory.appendingPathComponent("config.json"))) as? [String: Any])
        var text = try #require(config["text_config"] as? [String: Any])
        text["tie_word_embeddings"] = false
        config["text_config"] = text
        try JSONSerialization.data(withJSONObject: config).write(to: dir.appendingPathComponent("config.json"))

        let ref = try Fixtures.reference(name)
        let pixels = try ref.tensor("pixel_values").floats()
        let prompt = try ref.tensor("input_ids").ints()
        let int4 = try PaliGemmaModel(directory: Fixtures.model(name), quantization: .int4)
        let float = try PaliGemmaModel(directory: dir)
        let original = try PaliGemmaModel(directory: Fixtures.model(name))
        var out: [[Float]] = []
        for model in [int4, float, original] {
            let logits = try model.forward(ids: prompt, imageFeatures: model.imageFeatures(pixels: pixels), prefixLength: prompt.count,
                                           cache: model.makeCache(capacity: prompt.count), logits: .all)
            out.append(logits.values)
        }
        let (d, _) = maxAbsDiff(out[0], out[1])
        let (fromOriginal, _) = maxAbsDiff(out[0], out[2])
        print("[\(name)] int4 vs float with the dequantized weights: prompt logits max |diff| \(d) (vs the original weights: \(fromOriginal))")
        #expect(d <= 0.15)
        #expect(d * 8 <= fromOriginal)
    }

    @Test("int4 refuses a decoder matrix whose input size is not a multiple of 32, naming it")
    func refusesRaggedGroups() throws {
        // pg1-bf16's text hidden size is 48.
        do {
            _ = try PaliGemmaModel(directory: Fixtures.model("pg1-bf16"), quantization: .int4)
            Issue.record("loaded")
        } catch let PaliGemmaError.weights(tensor, reason) {
            #expect(tensor.hasSuffix("layers.0.self_attn.q_proj.weight"), "\(tensor)")
            #expect(reason.contains("48") && reason.contains("multiple of 32"), "\(reason)")
        }
    }

    // MARK: Stored 4-bit folders (paligemma quantize --bits 4)

    static func quantize4(_ name: String, maxShardBytes: Int = QuantizedCheckpoint.defaultMaxShardBytes,
                          chunkBytes: Int = 4096) throws -> (URL, QuantizedCheckpoint.Summary) {
        let out = try temporaryDirectory().appendingPathComponent("out4")
        let summary = try QuantizedCheckpoint.write(Checkpoint(directory: Fixtures.model(name)), to: out, bits: 4,
                                               maxShardBytes: maxShardBytes, chunkBytes: chunkBytes)
        return (out, summary)
    }

    @Test("a 4-bit folder loads as stored int4 and gives exactly the logits of int4 at load", arguments: Int4Tests.fixtures)
    func storedFolder(name: String) throws {
        // Small pieces (several row blocks per matrix) and small shards (an index).
        let (out, summary) = try Self.quantize4(name, maxShardBytes: 40_000)
        print("[\(name)] \(summary.line)")
        #expect(summary.bits == 4 && summary.shards > 1)
        let stored = try PaliGemmaModel(directory: out)
        #expect(stored.weightFormat == .int4Stored)
        let atLoad = try PaliGemmaModel(directory: Fixtures.model(name), quantization: .int4)
        let (a, b) = (try QuantizedCheckpointTests.logits(stored, name), try QuantizedCheckpointTests.logits(atLoad, name))
        let (d, _) = maxAbsDiff(a, b)
        print("[\(name)] stored 4-bit vs int4 at load: max |diff| \(d)")
        #expect(d == 0)
        let info = try CheckpointSummary(checkpoint: Checkpoint(directory: out))
        let source = try CheckpointSummary(checkpoint: Checkpoint(directory: Fixtures.model(name)))
        #expect(info.int4Tensors == summary.tensorsQuantized && info.int8Tensors == 0)
        #expect(info.parameterCount == source.parameterCount, "\(info.parameterCount) vs \(source.parameterCount)")
        #expect(info.text(loadSeconds: 0).contains("int4         \(summary.tensorsQuantized) matrices"))
        // Quantizing again, or asking for int4 on top, is refused.
        let again = QuantizedCheckpointTests.error { try QuantizedCheckpoint.write(Checkpoint(directory: out), to: out.deletingLastPathComponent().appendingPathComponent("again"), bits: 4) }
        guard case let .safetensors(_, _, reason)? = again else { Issue.record("\(String(describing: again))"); return }
        #expect(reason.contains("already quantized"))
        for asked in [Quantization.int4, .int8] {
            let e = QuantizedCheckpointTests.error { _ = try PaliGemmaModel(directory: out, quantization: asked) }
            guard case let .weights(_, why)? = e else { Issue.record("\(String(describing: e))"); return }
            #expect(why.contains("stored quantized") && why.contains(asked.rawValue), "\(why)")
        }
    }

    @Test("int4 at load refuses an int8 folder; --bits 4 refuses input sizes that are not multiples of 32")
    func refusals() throws {
        let (int8, _) = try QuantizedCheckpointTests.quantize(Fixtures.model("pg1-f32"))
        let e = QuantizedCheckpointTests.error { _ = try PaliGemmaModel(directory: int8, quantization: .int4) }
        guard case let .weights(tensor, reason)? = e else { Issue.record("\(String(describing: e))"); return }
        #expect(tensor.hasSuffix(".weight") && reason.contains("I8") && reason.contains("float folder"), "\(tensor): \(reason)")
        let ragged = QuantizedCheckpointTests.error { _ = try Self.quantize4("pg1-bf16") }
        guard case let .weights(name, why)? = ragged else { Issue.record("\(String(describing: ragged))"); return }
        #expect(name.hasSuffix("q_proj.weight") && why.contains("multiple of 32"), "\(name): \(why)")
    }

    static let layer = "language_model.model.layers.1."
    static let corruptions: [QuantizedCheckpointTests.Corruption] = [
        .init(description: "group scales missing", tensor: layer + "mlp.up_proj.weight", words: ["group scales", "missing"]) { items in
            items.removeAll { $0.name == layer + "mlp.up_proj.weight_scale" }
        },
        .init(description: "group scales of the wrong shape", tensor: layer + "self_attn.q_proj.weight_scale", words: ["[64, 3]", "F16 [64, 2]"]) { items in
            QuantizedCheckpointTests.replace(&items, layer + "self_attn.q_proj.weight_scale") {
                SafetensorsWriter.Item(name: $0.name, dtype: .float16, shape: [64, 3], bytes: [UInt8](repeating: 0x3c, count: 64 * 3 * 2))
            }
        },
        .init(description: "group scales in F32", tensor: layer + "self_attn.k_proj.weight_scale", words: ["F32", "F16"]) { items in
            QuantizedCheckpointTests.replace(&items, layer + "self_attn.k_proj.weight_scale") {
                .float32($0.name, shape: $0.shape, [Float](repeating: 0.01, count: $0.shape.reduce(1, *)))
            }
        },
        .init(description: "an infinite group scale", tensor: layer + "mlp.down_proj.weight_scale", words: ["not finite", "group 1"]) { items in
            QuantizedCheckpointTests.replace(&items, layer + "mlp.down_proj.weight_scale") {
                var bytes = $0.bytes
                bytes[2] = 0x00; bytes[3] = 0x7c  // row 0, group 1: +inf
                return SafetensorsWriter.Item(name: $0.name, dtype: .float16, shape: $0.shape, bytes: bytes)
            }
        },
        .init(description: "packed values of the wrong shape", tensor: layer + "mlp.gate_proj.weight", words: ["[96, 64]", "two values a byte"]) { items in
            QuantizedCheckpointTests.replace(&items, layer + "mlp.gate_proj.weight") {
                SafetensorsWriter.Item(name: $0.name, dtype: .uint8, shape: [96, 64], bytes: [UInt8](repeating: 0x88, count: 96 * 64))
            }
        },
        .init(description: "one matrix int8 among 4-bit", tensor: layer + "self_attn.o_proj.weight", words: ["4-bit", "I8", "one way"]) { items in
            QuantizedCheckpointTests.replace(&items, layer + "self_attn.o_proj.weight") {
                SafetensorsWriter.Item(name: $0.name, dtype: .int8, shape: [64, 64], bytes: [UInt8](repeating: 1, count: 64 * 64))
            }
            QuantizedCheckpointTests.replace(&items, layer + "self_attn.o_proj.weight_scale") { .float32($0.name, shape: [64], [Float](repeating: 0.01, count: 64)) }
        },
        .init(description: "one matrix float among 4-bit", tensor: layer + "mlp.down_proj.weight", words: ["F32", "every decoder matrix", "4-bit"]) { items in
            QuantizedCheckpointTests.replace(&items, layer + "mlp.down_proj.weight") { .float32($0.name, shape: [64, 96], [Float](repeating: 0.5, count: 64 * 96)) }
            items.removeAll { $0.name == layer + "mlp.down_proj.weight_scale" }
        },
    ]

    @Test("corrupt 4-bit folders are refused, naming the tensor", arguments: corruptions)
    func corrupt(_ c: QuantizedCheckpointTests.Corruption) throws {
        try QuantizedCheckpointTests.expectRefused(c, folder: Self.quantize4("pg1-f32").0, asked: [.none])
    }
}

// MARK: The command line

extension Int4Tests {
    @Test func cliQuantize4ThenGenerate() throws {
        let c = try EndToEndTests.Case("pg2-answer")
        let parent = try temporaryDirectory()
        let output = parent.appendingPathComponent("int4")
        let q = try EndToEndTests.run(["quantize", "--model", c.model.path, "--output", output.path, "--bits", "4"])
        print("quantize --bits 4: \(q.stdout)", terminator: "")
        #expect(q.status == 0, "\(q.stderr)")
        #expect(q.stdout.hasPrefix("quantized ") && q.stdout.contains("to int4"), "\(q.stdout)")

        let args = ["--image", c.image.path, "--prompt", c.prompt, "--max-tokens", "10", "--json"]
        let stored = try EndToEndTests.run(["generate", "--model", output.path] + args)
        let atLoad = try EndToEndTests.run(["generate", "--model", c.model.path, "--quantize", "int4"] + args)
        #expect(stored.status == 0 && atLoad.status == 0, "\(stored.stderr) \(atLoad.stderr)")
        let (a, b) = (EndToEndTests.json(stored.stdout), EndToEndTests.json(atLoad.stdout))
        print("4-bit folder: \(a["tokens"] as? [Int] ?? []) \((a["text"] as? String ?? "").debugDescription)")
        #expect(a["tokens"] as? [Int] != nil && a["tokens"] as? [Int] == b["tokens"] as? [Int])

        // Bad values are usage errors (64); int4 on top of a quantized folder is refused (65 or 66), in one line.
        #expect(try EndToEndTests.run(["quantize", "--model", c.model.path, "--output", parent.appendingPathComponent("x").path, "--bits", "3"]).status == 64)
        #expect(try EndToEndTests.run(["generate", "--model", c.model.path, "--quantize", "int3"] + args).status == 64)
        let twice = try EndToEndTests.run(["generate", "--model", output.path, "--quantize", "int4"] + args)
        #expect(twice.status != 0 && twice.stderr.split(separator: "\n").count == 1 && twice.stderr.contains("stored quantized"), "\(twice.stderr)")

        let inspect = try EndToEndTests.run(["inspect", "--model", output.path])
        #expect(inspect.status == 0 && inspect.stdout.contains("U8") && inspect.stdout.contains("stored 4-bit"), "\(inspect.stdout)")
        let bench = try EndToEndTests.run(["bench", "--model", output.path, "--new-tokens", "2", "--prompt-tokens", "2", "--json"])
        #expect(EndToEndTests.json(bench.stdout)["quantization"] as? String == "int4-stored", "\(bench.stdout) \(bench.stderr)")
        let agreement = try EndToEndTests.run(["bench", "--model", c.model.path, "--agreement", "3", "--quantize", "int4", "--prompt-tokens", "2"])
        let r = EndToEndTests.json(agreement.stdout)
        #expect(r["quantization"] as? String == "int4" && r["steps"] as? Int == 3, "\(agreement.stdout) \(agreement.stderr)")
    }
}
