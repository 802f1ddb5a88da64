import Foundation

// Timing of the VQ-VAE mask decoder and of the mask placement (`paligemma-mask-bench`).

extension MaskDecoder {
    /// Timing of `decode` (codes -> 64x64) and of the placement into an image.
    public struct BenchmarkResult: Sendable, Equatable {
        public let iterations: Int
        public let decodeMedianMs: Double
        public let decodeMinMs: Double
        public let placeMedianMs: Double
        public let threads: Int
    }

    /// Decodes `iterations` pseudo-random code sets (after one warm-up) and places each mask
    /// into a `placeWidth` x `placeHeight` image covering most of it.
    public func benchmark(iterations: Int = 50, placeWidth: Int = 640, placeHeight: Int = 480) throws -> BenchmarkResult {
        let n = max(1, iterations)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func codes() -> [Int] {
            (0..<Self.codesPerMask).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int(state >> 57)  // 0...127
            }
        }
        _ = try decode(codes: codes())
        let clock = ContinuousClock()
        var decodeTimes: [Double] = [], placeTimes: [Double] = []
        for _ in 0..<n {
            let c = codes()
            var mask: [Float] = []
            let d = try clock.measure { mask = try decode(codes: c) }
            let p = try clock.measure {
                _ = try MaskPlacement.place(mask64: mask, locs: [50, 60, 980, 990], imageWidth: placeWidth, imageHeight: placeHeight)
            }
            decodeTimes.append(Self.milliseconds(d))
            placeTimes.append(Self.milliseconds(p))
        }
        decodeTimes.sort()
        placeTimes.sort()
        return BenchmarkResult(iterations: n, decodeMedianMs: decodeTimes[n / 2], decodeMinMs: decodeTimes[0],
                               placeMedianMs: placeTimes[n / 2], threads: Kernels.threads)
    }

    static func milliseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }
}
