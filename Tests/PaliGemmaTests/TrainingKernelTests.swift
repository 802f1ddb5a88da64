import CPaliGemmaKernels
import Foundation
import Testing
@testable import PaliGemma

/// The kernels training adds, at every ISA level, against float64 references.
struct TrainingKernelTests {
    @Test("pg_matmul and pg_matmul_ta (x read transposed; w k-major in f32, bf16, f16, i8) against a float64 reference on every ISA level")
    func matmul() {
        var rng = SeededRandom(17)
        var worst: Float = 0
        for level in KernelTests.levels {
            for (m, n, k) in [(1, 5, 3), (3, 40, 700), (7, 33, 300), (13, 64, 257), (40, 100, 64), (131, 520, 70)] {
                let x = rng.floats(m * k), wf = rng.floats(k * n)
                var xt = [Float](repeating: 0, count: k * m)  // [K, M]
                for i in 0..<m { for t in 0..<k { xt[t * m + i] = x[i * k + t] } }
                for dtype in [DType.float32, .bfloat16, .float16, .int8] {
                    // Weights as stored in dtype, and the float values they hold.
                    var bytes = [UInt8](repeating: 0, count: k * n * dtype.size)
                    var held = wf
                    if dtype == .int8 {
                        held = wf.map { Float(Int8(max(-127, min(127, ($0 * 100).rounded())))) }
                        bytes = held.map { UInt8(bitPattern: Int8($0)) }
                    } else {
                        held.withUnsafeBufferPointer { v in
                            bytes.withUnsafeMutableBytes { Ops.convertFromFloat(v.baseAddress!, to: dtype, into: $0.baseAddress!, count: k * n) }
                        }
                        bytes.withUnsafeBytes { b in
                            held.withUnsafeMutableBufferPointer { Ops.convertToFloat(b.baseAddress!, dtype, into: $0.baseAddress!, count: k * n) }
                        }
                    }
                    var y = [Float](repeating: .nan, count: m * n), yt = y
                    x.withUnsafeBufferPointer { xp in
                        bytes.withUnsafeBytes { wp in
                            y.withUnsafeMutableBufferPointer { yp in
                                pg_matmul_isa(Int32(level.rawValue), xp.baseAddress, k, wp.baseAddress, dtype.kernelType ?? 0, n,
                                              yp.baseAddress, n, m, n, k)
                            }
                        }
                    }
                    xt.withUnsafeBufferPointer { ap in
                        bytes.withUnsafeBytes { wp in
                            yt.withUnsafeMutableBufferPointer { yp in
                                pg_matmul_ta_isa(Int32(level.rawValue), ap.baseAddress, m, wp.baseAddress, dtype.kernelType ?? 0, n,
                                                 yp.baseAddress, n, m, n, k)
                            }
                        }
                    }
                    for i in 0..<m {
                        for j in 0..<n {
                            var s = 0.0, mag = 0.0
                            for t in 0..<k {
                                s += Double(x[i * k + t]) * Double(held[t * n + j])
                                mag += abs(Double(x[i * k + t]) * Double(held[t * n + j]))
                            }
                            let err = Float(abs(Double(y[i * n + j]) - s)), errT = Float(abs(Double(yt[i * n + j]) - s))
                            worst = max(worst, max(err, errT) / Float(max(mag, 1)))
                            #expect(err <= Float(mag) * 1e-6 + 1e-6, "\(level.name) \(dtype) \(m)x\(n)x\(k) y[\(i),\(j)]")
                            #expect(errT <= Float(mag) * 1e-6 + 1e-6, "pg_matmul_ta \(level.name) \(dtype) \(m)x\(n)x\(k) y[\(i),\(j)]")
                        }
                    }
                }
            }
        }
        print("pg_matmul, pg_matmul_ta: worst |diff| / Σ|products| vs float64 \(worst)")
    }

    @Test("GeGLU and GELU backward (tanh and erf) against float64 derivatives on every ISA level")
    func gegluBackward() {
        var rng = SeededRandom(19)
        let n = 20_011
        let gate = rng.floats(n).map { $0 * 6 }, up = rng.floats(n), da = rng.floats(n)
        var worst = 0.0
        for level in KernelTests.levels {
            Kernels.withISA(level) {
                for exact in [false, true] {
                    let (dg, du) = Ops.gegluBackward(Matrix(rows: 1, cols: n, values: da), gate: Matrix(rows: 1, cols: n, values: gate),
                                                     up: Matrix(rows: 1, cols: n, values: up), exact: exact)
                    let dh = Ops.geluBackward(Matrix(rows: 1, cols: n, values: da), input: Matrix(rows: 1, cols: n, values: gate), exact: exact)
                    for i in 0..<n {
                        let x = Double(gate[i])
                        let g: Double, slope: Double
                        if exact {
                            let cdf = 0.5 * (1 + erf(x / 2.0.squareRoot()))
                            g = x * cdf
                            slope = cdf + x * exp(-0.5 * x * x) / (2 * Double.pi).squareRoot()
                        } else {
                            let k = (2 / Double.pi).squareRoot(), t = tanh(k * (x + 0.044715 * x * x * x))
                            g = 0.5 * x * (1 + t)
                            slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * 0.044715 * x * x)
                        }
                        let e1 = abs(Double(dg[0, i]) - Double(da[i]) * Double(up[i]) * slope)
                        let e2 = abs(Double(du[0, i]) - Double(da[i]) * g)
                        let e3 = abs(Double(dh[0, i]) - Double(da[i]) * slope)
                        worst = max(worst, e1, e2, e3)
                        #expect(e1 <= 2e-6 && e2 <= 1e-5 && e3 <= 2e-6, "\(level.name) exact \(exact) at \(i): x \(x)")
                    }
                }
            }
        }
        print("GeGLU/GELU backward: worst |diff| vs float64 \(worst)")
    }
}
