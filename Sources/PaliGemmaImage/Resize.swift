// Resizing identical to Pillow 13's Image.resize for 8-bit images (libImaging/Resample.c):
// separable convolution, normally horizontal pass first (only over the rows the vertical
// pass needs) then vertical, but vertical first when the height shrinks by more than
// twice as many pixels as the width; the filter support widens by the scale factor when shrinking;
// coefficients are normalised in double precision, converted to fixed point with 22
// fractional bits, and each pass rounds and clips to uint8.
import CImageCodecs
import Dispatch
import Foundation

/// Resampling filters, named and behaving as Pillow's.
public enum ResizeFilter: String, Sendable, CaseIterable {
    /// Pillow's BICUBIC (a = -0.5, support 2); what transformers uses for PaliGemma.
    case bicubic
    /// Pillow's BILINEAR (triangle, support 1); what big_vision trained with.
    case bilinear

    /// The PIL.Image.Resampling value (as stored in preprocessor_config.json).
    public var pilValue: Int { self == .bicubic ? 3 : 2 }

    public init?(pilValue: Int) {
        switch pilValue {
        case 3: self = .bicubic
        case 2: self = .bilinear
        default: return nil
        }
    }

    var support: Double { self == .bicubic ? 2.0 : 1.0 }

    @inline(__always)
    func weight(_ x: Double) -> Double {
        let x = x < 0 ? -x : x
        switch self {
        case .bilinear:
            return x < 1.0 ? 1.0 - x : 0.0
        case .bicubic:
            let a = -0.5
            if x < 1.0 { return ((a + 2.0) * x - (a + 3.0)) * x * x + 1 }
            if x < 2.0 { return (((x - 5) * x + 8) * x - 4) * a }
            return 0.0
        }
    }
}

/// Fixed-point coefficients for one axis, laid out as Resample.c's precompute_coeffs.
struct ResampleCoefficients {
    static let precisionBits = 32 - 8 - 2

    let ksize: Int
    /// (first input index, tap count) per output sample.
    var bounds: [Int32]
    /// `ksize` coefficients per output sample.
    var coeffs: [Int32]

    init(inSize: Int, outSize: Int, filter: ResizeFilter) {
        // Pillow passes the box as floats: (in1 - in0) is a float subtraction.
        let in0: Float = 0, in1 = Float(inSize)
        let scale = Double(in1 - in0) / Double(outSize)
        let filterScale = max(scale, 1.0)
        let support = filter.support * filterScale
        let ksize = Int(support.rounded(.up)) * 2 + 1
        let invFilterScale = 1.0 / filterScale
        let one = Double(1 << Self.precisionBits)

        var bounds = [Int32](repeating: 0, count: outSize * 2)
        var coeffs = [Int32](repeating: 0, count: outSize * ksize)
        var k = [Double](repeating: 0, count: ksize)
        for xx in 0..<outSize {
            let center = Double(in0) + (Double(xx) + 0.5) * scale
            var xmin = Int(center - support + 0.5)  // C (int) cast: truncation
            if xmin < 0 { xmin = 0 }
            var xmax = Int(center + support + 0.5)
            if xmax > inSize { xmax = inSize }
            xmax = min(max(xmax - xmin, 0), ksize)
            var ww = 0.0
            for x in 0..<xmax {
                let w = filter.weight((Double(x + xmin) - center + 0.5) * invFilterScale)
                k[x] = w
                ww += w
            }
            for x in 0..<xmax {
                let w = ww != 0.0 ? k[x] / ww : k[x]
                coeffs[xx * ksize + x] = w < 0 ? Int32(-0.5 + w * one) : Int32(0.5 + w * one)
            }
            bounds[xx * 2] = Int32(xmin)
            bounds[xx * 2 + 1] = Int32(xmax)
        }
        self.ksize = ksize
        self.bounds = bounds
        self.coeffs = coeffs
    }
}

extension RGBImage {
    /// Resized exactly as Pillow's `Image.resize((width, height), filter)` would.
    /// Throws `ImageError.invalidArgument` for a non-positive size.
    public func resized(width outWidth: Int, height outHeight: Int, filter: ResizeFilter = .bicubic) throws -> RGBImage {
        guard outWidth > 0, outHeight > 0, outWidth <= Int(Int32.max) / 4, outHeight <= Int(Int32.max) / 4 else {
            throw ImageError.invalidArgument("cannot resize to \(outWidth)x\(outHeight)")
        }
        if outWidth == width && outHeight == height {
            return self  // Pillow returns a copy without filtering
        }
        let horizontal = outWidth != width
            ? ResampleCoefficients(inSize: width, outSize: outWidth, filter: filter) : nil
        let vertical = outHeight != height
            ? ResampleCoefficients(inSize: height, outSize: outHeight, filter: filter) : nil
        // Pillow 13 (ImagingResampleInner): when the height shrinks by more than twice as
        // many pixels as the width, the vertical pass runs first. The order changes the
        // result because each pass rounds to uint8.
        let verticalFirst = height - outHeight > 0 && height - outHeight > (width - outWidth) * 2
        var image = self
        if verticalFirst {
            if let vertical { image = image.verticalPass(vertical) }
            if let horizontal { image = image.horizontalPass(horizontal, firstRow: 0, rowCount: image.height) }
        } else {
            if let horizontal {
                // Only the rows the vertical pass reads (all of them without one).
                var firstRow = 0, lastRow = height
                if let vertical {
                    firstRow = Int(vertical.bounds[0])
                    lastRow = Int(vertical.bounds[outHeight * 2 - 2] + vertical.bounds[outHeight * 2 - 1])
                }
                image = image.horizontalPass(horizontal, firstRow: firstRow, rowCount: lastRow - firstRow)
                if var vertical {
                    for i in 0..<outHeight { vertical.bounds[i * 2] -= Int32(firstRow) }
                    image = image.verticalPass(vertical)
                }
            } else if let vertical {
                image = image.verticalPass(vertical)
            }
        }
        return image
    }

    /// Resamples rows [firstRow, firstRow + rowCount) horizontally to `c`'s output width.
    private func horizontalPass(_ c: ResampleCoefficients, firstRow: Int, rowCount: Int) -> RGBImage {
        let outWidth = c.bounds.count / 2
        let inStride = width * 3, outStride = outWidth * 3
        let out = pixels.withUnsafeBufferPointer { src in
            [UInt8](unsafeUninitializedCapacity: rowCount * outStride) { dst, initialized in
                let inBase = SendablePointer(src.baseAddress), outBase = SendableMutablePointer(dst.baseAddress)
                c.bounds.withUnsafeBufferPointer { b in
                    c.coeffs.withUnsafeBufferPointer { k in
                        let bb = SendablePointer(b.baseAddress), kk = SendablePointer(k.baseAddress)
                        parallelRows(rowCount, work: rowCount * outStride * c.ksize) { begin, end in
                            pgc_resample_horizontal(inBase.pointer, inStride, outBase.pointer, outStride,
                                                    Int32(outWidth), 3, Int32(firstRow), Int32(begin), Int32(end),
                                                    bb.pointer, kk.pointer, Int32(c.ksize))
                        }
                    }
                }
                initialized = rowCount * outStride
            }
        }
        return RGBImage(uncheckedWidth: outWidth, height: rowCount, pixels: out)
    }

    /// Resamples vertically; `c.bounds` index rows of this image.
    private func verticalPass(_ c: ResampleCoefficients) -> RGBImage {
        let outHeight = c.bounds.count / 2
        let stride = width * 3
        let out = pixels.withUnsafeBufferPointer { src in
            [UInt8](unsafeUninitializedCapacity: outHeight * stride) { dst, initialized in
                let inBase = SendablePointer(src.baseAddress), outBase = SendableMutablePointer(dst.baseAddress)
                c.bounds.withUnsafeBufferPointer { b in
                    c.coeffs.withUnsafeBufferPointer { k in
                        let bb = SendablePointer(b.baseAddress), kk = SendablePointer(k.baseAddress)
                        parallelRows(outHeight, work: outHeight * stride * c.ksize) { begin, end in
                            pgc_resample_vertical(inBase.pointer, stride, outBase.pointer, stride, stride,
                                                  Int32(begin), Int32(end), bb.pointer, kk.pointer, Int32(c.ksize))
                        }
                    }
                }
                initialized = outHeight * stride
            }
        }
        return RGBImage(uncheckedWidth: width, height: outHeight, pixels: out)
    }
}

/// Raw pointers handed to worker threads that write disjoint rows.
struct SendablePointer<T>: @unchecked Sendable {
    let pointer: UnsafePointer<T>?
    init(_ pointer: UnsafePointer<T>?) { self.pointer = pointer }
}

struct SendableMutablePointer<T>: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<T>?
    init(_ pointer: UnsafeMutablePointer<T>?) { self.pointer = pointer }
}

/// Splits `rows` into contiguous chunks processed on all cores when there is enough
/// work (`work` multiply-adds) to pay for the threads; chunks never overlap.
func parallelRows(_ rows: Int, work: Int, _ body: @Sendable (Int, Int) -> Void) {
    let cores = ProcessInfo.processInfo.activeProcessorCount
    let chunks = min(rows, work < 4_000_000 ? 1 : cores * 4)
    if chunks <= 1 {
        body(0, rows)
        return
    }
    DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
        let begin = rows * chunk / chunks, end = rows * (chunk + 1) / chunks
        if begin < end { body(begin, end) }
    }
}
