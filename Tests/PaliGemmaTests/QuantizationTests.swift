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

    @Test("pg_linear_scaled with int8 weights on every ISA level")
    func linearInt8() {
        var rng = SeededRandom(4)
        var worst: Float = 0
        for level in KernelTests.levels {
            for (m, n, k) in [(1, 33, 17), (1, 64, 300), (3, 20, 40), (7, 45, 257), (40, 70, 130)] {
                let x = rng.floats(m * k)
                let q = (0..<(n * k)).map { _ in Int8(truncatingIfNeeded: Int(rng.next() % 255) - 127) }
                let scales = rng.floats(n).map { abs($0) * 0.01 + 1e-3 }
                let bias = rng.floats(n)
                var y = [Float](repeating: .nan, count: m * n)
                x.withUnsafeBufferPointer { xp in
                    q.withUnsafeBytes { wp in
                        scales.withUnsafeBufferPointer { sp in
                            bias.withUnsafeBufferPointer { bp in
                                y.withUnsafeMutableBufferPointer { yp in
                                    pg_linear_scaled_isa(Int32(level.rawValue), xp.baseAddress, k, wp.baseAddress, Int32(PG_I8.rawValue), k,
                                                         sp.baseAddress, bp.baseAddress, yp.baseAddress, n, m, n, k)
                                }
                            }
                        }
                    }
                }
                for i in 0..<m {
                    for j in 0..<n {
                        var s = 0.0
                        for t in 0..<k { s += Double(x[i * k + t]) * Double(q[j * k + t]) }
                        let want = s * Double(scales[j]) + Double(bias[j])
                        let err = Float(abs(Double(y[i * n + j]) - want))
                        worst = max(worst, err)
                        #expect(err <= 1e-4 * Float(k).squareRoot(), "\(level.name) m\(m) n\(n) k\(k): \(y[i * n + j]) vs \(want)")
                    }
                }
            }
        }
        print("pg_linear_scaled int8: worst |diff| \(worst)")
    }

    @Test("int8 decoder on the parity fixtures: logits close, greedy tokens mostly kept", arguments: ModelParityTests.names)
    func accuracy(name: String) throws {
        let ref = try Fixtures.reference(name)
        let pixels = try ref.tensor("pixel_values").floats()
        let prompt = try ref.tensor("input_ids").ints()
        let want = try ref.tensor("logits_prompt").floats()
        let model = try PaliGemmaModel(directory: Fixtures.model(name), quantization: .int8)
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
        print("[\(name)] int8: prompt logits max |diff| \(d) (logit range \(range)), top-1 agreement \(agree)/\(logits.rows)")
        #expect(d <= 0.05 * range, "\(name): int8 logits differ by \(d)")
        #expect(agree * 10 >= logits.rows * 8, "\(name): top-1 agrees on only \(agree) of \(logits.rows) positions")
    }
}
