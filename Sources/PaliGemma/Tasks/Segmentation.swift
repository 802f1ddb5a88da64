// Placing a decoded 64x64 mask into the image, as big_vision's segmentation evaluator does
// (big_vision/evaluators/proj/paligemma/transfers/segmentation.py):
//
//   1. box = loc / 1023, pixel box x1 = int(x_min * W), y1 = int(y_min * H),
//      x2 = int(x_max * W), y2 = int(y_max * H)   (Python int(): truncation; end exclusive)
//   2. if x2 <= x1 or y2 <= y1 the mask is empty (the box collapsed to no pixels)
//   3. else PIL.Image.fromarray(mask64).resize((x2 - x1, y2 - y1), BILINEAR) on the float32
//      image (mode "F"; Pillow widens the filter when shrinking, i.e. antialiases)
//   4. pixels > 0 are inside; pasted at rows y1..<y2, columns x1..<x2 of an all-false mask.

/// A binary mask over the whole image, row-major.
public struct BinaryMask: Sendable, Equatable {
    public let width: Int
    public let height: Int
    /// 1 inside, 0 outside; `width * height` bytes, row-major.
    public let pixels: [UInt8]

    public init(width: Int, height: Int, pixels: [UInt8]) {
        self.width = width
        self.height = height
        self.pixels = pixels
    }

    /// Number of pixels inside.
    public var area: Int { pixels.reduce(0) { $0 + Int($1) } }

    /// COCO's uncompressed run-length encoding: the mask read in column-major order
    /// (down each column, columns left to right), alternating runs of 0s and 1s, starting
    /// with a (possibly empty) run of 0s.
    public var rleCounts: [Int] {
        var counts: [Int] = []
        var current: UInt8 = 0, run = 0
        for x in 0..<width {
            for y in 0..<height {
                let v = pixels[y * width + x]
                if v != current {
                    counts.append(run)
                    current = v
                    run = 0
                }
                run += 1
            }
        }
        counts.append(run)
        return counts
    }

    /// COCO's compressed RLE string (pycocotools' `mask.encode(...)["counts"]`): each count,
    /// minus the count two before it (from the third on), as 5-bit groups with a
    /// continuation bit, offset by 48 into printable ASCII.
    public var cocoCounts: String {
        let counts = rleCounts
        var out: [UInt8] = []
        for i in 0..<counts.count {
            var x = counts[i]
            if i > 2 { x -= counts[i - 2] }
            var more = true
            while more {
                var c = x & 0x1F
                x >>= 5  // arithmetic shift: negative differences stay negative
                more = (c & 0x10) != 0 ? x != -1 : x != 0
                if more { c |= 0x20 }
                out.append(UInt8(c + 48))
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// The mask for uncompressed COCO counts, or nil when they are negative or do not cover
    /// exactly `width * height` pixels.
    public static func decode(rleCounts: [Int], width: Int, height: Int) -> BinaryMask? {
        guard width >= 0, height >= 0, rleCounts.allSatisfy({ $0 >= 0 }),
              rleCounts.reduce(0, +) == width * height else { return nil }
        var pixels = [UInt8](repeating: 0, count: width * height)
        var n = 0
        for (i, run) in rleCounts.enumerated() {
            if i % 2 == 1 {
                for j in n..<(n + run) { pixels[(j % height) * width + j / height] = 1 }
            }
            n += run
        }
        return BinaryMask(width: width, height: height, pixels: pixels)
    }

    /// The mask as an 8-bit grayscale image (0 or 255).
    public var grayPixels: [UInt8] { pixels.map { $0 == 0 ? 0 : 255 } }
}

/// Where a mask goes: the pixel box of big_vision's placement (may be empty).
public struct MaskBox: Sendable, Equatable {
    /// Columns x1..<x2 and rows y1..<y2.
    public let x1, y1, x2, y2: Int
    public var isEmpty: Bool { x2 <= x1 || y2 <= y1 }
}

public enum MaskPlacement {
    /// big_vision's pixel box for location codes (y_min, x_min, y_max, x_max): truncation of
    /// code / 1023 * size.
    public static func pixelBox(locs: [Int], imageWidth: Int, imageHeight: Int) -> MaskBox {
        func px(_ code: Int, _ size: Int) -> Int { Int(Double(code) / 1023 * Double(size)) }
        return MaskBox(x1: px(locs[1], imageWidth), y1: px(locs[0], imageHeight),
                       x2: px(locs[3], imageWidth), y2: px(locs[2], imageHeight))
    }

    /// The full-image mask for a 64x64 decoder output (row-major) in the box of `locs`.
    public static func place(mask64: [Float], locs: [Int], imageWidth: Int, imageHeight: Int) throws -> BinaryMask {
        guard mask64.count == MaskDecoder.maskSize * MaskDecoder.maskSize else {
            throw PaliGemmaError.input("mask has \(mask64.count) values, expected 64x64")
        }
        guard locs.count == 4 else { throw PaliGemmaError.input("a box needs 4 location codes, got \(locs.count)") }
        guard imageWidth > 0, imageHeight > 0 else {
            throw PaliGemmaError.input("image size \(imageWidth)x\(imageHeight) is not positive")
        }
        var pixels = [UInt8](repeating: 0, count: imageWidth * imageHeight)
        let box = pixelBox(locs: locs, imageWidth: imageWidth, imageHeight: imageHeight)
        if !box.isEmpty {
            let w = box.x2 - box.x1, h = box.y2 - box.y1
            let resized = resizeBilinear(mask64, width: 64, height: 64, toWidth: w, toHeight: h)
            for y in 0..<h where box.y1 + y < imageHeight {
                for x in 0..<w where box.x1 + x < imageWidth && resized[y * w + x] > 0 {
                    pixels[(box.y1 + y) * imageWidth + box.x1 + x] = 1
                }
            }
        }
        return BinaryMask(width: imageWidth, height: imageHeight, pixels: pixels)
    }

    // MARK: Pillow's BILINEAR resize of a float32 ("F") image

    /// Pillow's separable resampling (Resample.c) with the bilinear (triangle) filter, for
    /// 32-bit float images: coefficients in double, accumulation in double, each pass
    /// stored as float32; horizontal pass first; a pass whose size does not change is skipped.
    public static func resizeBilinear(_ src: [Float], width: Int, height: Int, toWidth: Int, toHeight: Int) -> [Float] {
        var image = src, w = width
        if toWidth != width {
            let (bounds, k, ksize) = coefficients(inSize: width, outSize: toWidth)
            var out = [Float](repeating: 0, count: toWidth * height)
            for y in 0..<height {
                for xx in 0..<toWidth {
                    let xmin = bounds[2 * xx], n = bounds[2 * xx + 1]
                    var ss = 0.0
                    for x in 0..<n { ss += Double(image[y * w + xmin + x]) * k[xx * ksize + x] }
                    out[y * toWidth + xx] = Float(ss)
                }
            }
            image = out
            w = toWidth
        }
        if toHeight != height {
            let (bounds, k, ksize) = coefficients(inSize: height, outSize: toHeight)
            var out = [Float](repeating: 0, count: w * toHeight)
            for yy in 0..<toHeight {
                let ymin = bounds[2 * yy], n = bounds[2 * yy + 1]
                for x in 0..<w {
                    var ss = 0.0
                    for y in 0..<n { ss += Double(image[(ymin + y) * w + x]) * k[yy * ksize + y] }
                    out[yy * w + x] = Float(ss)
                }
            }
            image = out
        }
        return image
    }

    /// Pillow's precompute_coeffs for the bilinear filter (support 1) over the whole input:
    /// per output pixel the first input index and the tap count, and normalised weights.
    static func coefficients(inSize: Int, outSize: Int) -> (bounds: [Int], weights: [Double], ksize: Int) {
        let scale = Double(inSize) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = 1.0 * filterScale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        var bounds = [Int](repeating: 0, count: 2 * outSize)
        var weights = [Double](repeating: 0, count: outSize * ksize)
        for xx in 0..<outSize {
            let center = (Double(xx) + 0.5) * scale
            let ss = 1.0 / filterScale
            let xmin = max(0, Int(center - support + 0.5))  // C (int): truncation toward zero
            let xmax = min(inSize, Int(center + support + 0.5)) - xmin
            var ww = 0.0
            for x in 0..<max(xmax, 0) {
                let t = abs((Double(x + xmin) - center + 0.5) * ss)
                let w = t < 1 ? 1 - t : 0
                weights[xx * ksize + x] = w
                ww += w
            }
            if ww != 0 { for x in 0..<max(xmax, 0) { weights[xx * ksize + x] /= ww } }
            bounds[2 * xx] = xmin
            bounds[2 * xx + 1] = max(xmax, 0)
        }
        return (bounds, weights, ksize)
    }
}
