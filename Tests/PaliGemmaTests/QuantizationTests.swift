import CPaliGemmaKernels
import Foundation
import Testing
@testable import PaliGemma

/// int8 weights: the kernels against a float64 reference of the dequantized matrix, and the
/// accuracy cost on the parity fixtures (measured and bounded).
struct QuantizationTests {
    @Test("pg_quantize_q8 rounds each row to within half a step")
    func quantize() {
        var rng = SeededRandom(3)
        let rows = 37, cols = 301
        var w = rng.floats(rows * cols).map { $0 * 4 }
        for c in 0..<cols { w[5 * cols + c] = 0 }  // an all-zero row
        let t = Tensor(values: w, shape: [rows, cols])
        let (q, scales) = Ops.quantizeInt8(t)
        #expect(q.dtype == .int8 && q.shape == [rows, cols])
        #expect(scales[5] == 1)
        guard let p = q.pointer else { Issue.record("no data"); return }
        var worst: Float = 0
        for r in 0..<rows {
            let maxAbs = (0..<cols).map { abs(w[r * cols + $0]) }.max() ?? 0
            if maxAbs > 0 { #expect(abs(scales[r] - maxAbs / 127) <= 1e-6 * maxAbs) }
            for c in 0..<cols {
                let v = Float(p.load(fromByteOffset: r * cols + c, as: Int8.self)) * scales[r]
                worst = max(worst, abs(v - w[r * cols + c]) / scales[r])
            }
        }
        print("int8 quantization: worst error \(worst) steps")
        #expect(worst <= 0.5 + 1e-4)
    }

    @Test("pg_linear_scaled with int8 weights on every ISA level (integer paths: decode, and prefill with SIMD)")
    func linearInt8() {
        var rng = SeededRandom(4)
        var worst: Float = 0  // largest error as a share of its bound
        // K above 2048 crosses the integer kernel's accumulation blocks; K % 16 != 0 its tail;
        // K of 8192 and more takes the four-row path; 2 to 8 rows the tiles of 3 weight rows (5 to 8
        // rows in two passes), columns not a multiple of 3 the one-row tiles.
        let shapes = [(1, 33, 17), (1, 64, 300), (2, 9, 2100), (1, 40, 4133), (2, 6, 8200), (3, 20, 40), (4, 7, 2048),
                      (7, 45, 257), (5, 10, 4100), (8, 8, 2066), (6, 4, 31),
                      (40, 70, 130), (13, 37, 515), (66, 33, 1030)]  // prefill: ragged rows, columns, odd k
        for level in KernelTests.levels {
            for (m, n, k) in shapes {
                // One row of x with a large outlier: the int16 quantization step follows max|x|.
                var x = rng.floats(m * k)
                x[k / 2] = 9
                let q = (0..<(n * k)).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 256) - 128) }
                let scales = rng.floats(n).map { abs($0) * 0.01 + 1e-3 }
                let bias = rng.floats(n)
                for useScales in [true, false] {
                    var y = [Float](repeating: .nan, count: m * n)
                    x.withUnsafeBufferPointer { xp in
                        q.withUnsafeBytes { wp in
                            scales.withUnsafeBufferPointer { sp in
                                bias.withUnsafeBufferPointer { bp in
                                    y.withUnsafeMutableBufferPointer { yp in
                                        pg_linear_scaled_isa(Int32(level.rawValue), xp.baseAddress, k, wp.baseAddress, Int32(PG_I8.rawValue), k,
                                                             useScales ? sp.baseAddress : nil, bp.baseAddress, yp.baseAddress, n, m, n, k)
                                    }
                                }
                            }
                        }
                    }
                    for i in 0..<m {
                        // Rows of x are quantized to int16 (decode and batched decode on every level,
                        // prefill with SIMD): each x moves by at most half a step.
                        let integer = m <= 8 || level != .scalar
                        let step = integer ? Double((0..<k).map { abs(x[i * k + $0]) }.max() ?? 0) / 32767 : 0
                        for j in 0..<n {
                            let s = useScales ? Double(scales[j]) : 1
                            var dot = 0.0, mag = 0.0, wsum = 0.0
                            for t in 0..<k {
                                dot += Double(x[i * k + t]) * Double(q[j * k + t])
                                mag += abs(Double(x[i * k + t]) * Double(q[j * k + t]))
                                wsum += abs(Double(q[j * k + t]))
                            }
                            let want = dot * s + Double(bias[j])
                            let err = Float(abs(Double(y[i * n + j]) - want))
                            let bound = Float((mag * 1e-6 + 0.5 * step * wsum) * s) + 1e-5
                            worst = max(worst, err / bound)
                            #expect(err <= bound, "\(level.name) m\(m) n\(n) k\(k): \(y[i * n + j]) vs \(want) (bound \(bound))")
                        }
                    }
                }
            }
        }
        print("pg_linear_scaled int8: worst |diff| = \(worst) of its bound")
    }

    @Test("int8 prefill with VNNI (vpdpwssd) gives exactly the AVX2 kernel's results")
    func linearInt8VNNI() {
        var rng = SeededRandom(5)
        print("int8 VNNI variants run here: \(Int4Tests.vnniVariants.map { $0.sorted() })")
        for (m, n, k) in [(7, 45, 257), (40, 70, 130), (13, 37, 515), (66, 33, 1030)] {
            var x = rng.floats(m * k)
            x[k / 2] = 9
            let q = (0..<(n * k)).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 256) - 128) }
            func run() -> [Float] {
                var y = [Float](repeating: .nan, count: m * n)
                x.withUnsafeBufferPointer { xp in
                    q.withUnsafeBytes { wp in
                        y.withUnsafeMutableBufferPointer { yp in
                            pg_linear_scaled_isa(Int32(ISA.avx2.rawValue), xp.baseAddress, k, wp.baseAddress, Int32(PG_I8.rawValue), k,
                                                 nil, nil, yp.baseAddress, n, m, n, k)
                        }
                    }
                }
                return y
            }
            let plain = Kernels.withFeatures([]) { run() }
            for variant in Int4Tests.vnniVariants {
                let y = Kernels.withFeatures(variant) { run() }
                #expect(y == plain, "\(variant.sorted()) m\(m) n\(n) k\(k) differs from AVX2")
            }
        }
    }

    @Test("integer int8 paths (decode and prefill): extreme values do not overflow the int32 accumulators")
    func linearInt8Extremes() {
        // Every weight -128 and every x at the top of its int16 range: each product is maximal.
        let k = 16_384 + 5, n = 5
        let q = [Int8](repeating: -128, count: n * k)
        for level in KernelTests.levels {
            for m in [1, 7] {
                for sign: Float in [1, -1] {
                    let x = [Float](repeating: 3 * sign, count: m * k)
                    var y = [Float](repeating: .nan, count: m * n)
                    x.withUnsafeBufferPointer { xp in
                        q.withUnsafeBytes { wp in
                            y.withUnsafeMutableBufferPointer { yp in
                                pg_linear_scaled_isa(Int32(level.rawValue), xp.baseAddress, k, wp.baseAddress, Int32(PG_I8.rawValue), k,
                                                     nil, nil, yp.baseAddress, n, m, n, k)
                            }
                        }
                    }
                    let want = Float(-128 * 3 * k) * sign
                    for v in y { #expect(abs(v - want) <= abs(want) * 1e-6, "\(level.name) m\(m): \(v) vs \(want)") }
                }
            }
        }
    }

    /// A quantized model's prompt logits on a parity fixture against transformers' (float
    /// weights): the largest difference, the logit range, and the positions whose top-1 agrees.
    static func promptAgreement(_ name: String, _ quantization: Quantization) throws -> (diff: Float, range: Float, agree: Int, rows: Int) {
        let ref = try Fixtures.reference(name)
        let pixels = try ref.tensor("pixel_values").floats()
        let prompt = try ref.tensor("input_ids").ints()
        let want = try ref.tensor("logits_prompt").floats()
        let model = try PaliGemmaModel(directory: Fixtures.model(name), quantization: quantization)
        let image = try model.imageFeatures(pixels: pixels)
        let logits = try model.forward(ids: prompt, imageFeatures: image, prefixLength: prompt.count,
                                       cache: model.makeCache(capacity: prompt.count), logits: .all)
        let (d, _) = maxAbsDiff(logits.values, want)
        let vocab = logits.cols
        var agree = 0
        for r in 0..<logits.rows {
            let row = Array(logits.values[(r * vocab)..<((r + 1) * vocab)])
            let ref = Array(want[(r * vocab)..<((r + 1) * vocab)])
            if row.indices.max(by: { row[$0] < row[$1] }) == ref.indices.max(by: { ref[$0] < ref[$1] }) { agree += 1 }
        }
        let range = (want.max() ?? 0) - (want.min() ?? 0)
        print("[\(name)] \(quantization.rawValue): prompt logits max |diff| \(d) (logit range \(range)), top-1 agreement \(agree)/\(logits.rows)")
        return (d, range, agree, logits.rows)
    }

    @Test("int8 decoder on the parity fixtures: logits close, greedy tokens mostly kept", arguments: ModelParityTests.names)
    func accuracy(name: String) throws {
        let r = try Self.promptAgreement(name, .int8)
        #expect(r.diff <= 0.05 * r.range, "\(name): int8 logits differ by \(r.diff)")
        #expect(r.agree * 10 >= r.rows * 8, "\(name): top-1 agrees on only \(r.agree) of \(r.rows) positions")
    }
}
