// Pillow's pixel conversions, integer for integer (libImaging/Convert.c, AlphaComposite.c).

enum PixelConversion {
    /// Pillow's `convert("RGB")` from "L": the value replicated into R, G and B.
    static func grayToRGB(_ gray: [UInt8]) -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: gray.count * 3) { out, initialized in
            gray.withUnsafeBufferPointer { src in
                for i in 0..<src.count {
                    let v = src[i]
                    out[i * 3] = v
                    out[i * 3 + 1] = v
                    out[i * 3 + 2] = v
                }
            }
            initialized = gray.count * 3
        }
    }

    /// libjpeg's CMYK output as Pillow reads it ("CMYK;I": every sample inverted) and then
    /// converts it (cmyk2rgb: nk = 255 - k; channel = clip(nk - nk * c / 255)).
    static func invertedCMYKToRGB(_ cmyk: [UInt8]) -> [UInt8] {
        let count = cmyk.count / 4
        return [UInt8](unsafeUninitializedCapacity: count * 3) { out, initialized in
            cmyk.withUnsafeBufferPointer { src in
                for i in 0..<count {
                    let nk = Int(src[i * 4 + 3])  // 255 - (255 - raw k)
                    for c in 0..<3 {
                        let value = 255 - Int(src[i * 4 + c])
                        out[i * 3 + c] = clip8(nk - mulDiv255(value, nk))
                    }
                }
            }
            initialized = count * 3
        }
    }

    /// Pillow's MULDIV255: a * b / 255 rounded, in integers.
    @inline(__always)
    static func mulDiv255(_ a: Int, _ b: Int) -> Int {
        let t = a * b + 128
        return ((t >> 8) + t) >> 8
    }

    @inline(__always)
    static func clip8(_ v: Int) -> UInt8 {
        UInt8(clamping: v)
    }

    /// One channel of `Image.alpha_composite(white, rgba)` (AlphaComposite.c with an opaque
    /// white destination): `value` is the source sample, `alpha` the source alpha.
    @inline(__always)
    static func compositeOnWhite(_ value: UInt8, alpha: UInt8) -> UInt8 {
        if alpha == 0 { return 255 }
        let precisionBits: UInt32 = 7
        let srcA = UInt32(alpha)
        let dstA: UInt32 = 255, dst: UInt32 = 255
        let blend = dstA * (255 - srcA)
        let outA255 = srcA * 255 + blend
        let coef1 = srcA * 255 * 255 * (1 << precisionBits) / outA255
        let coef2 = 255 * (1 << precisionBits) - coef1
        let tmp = UInt32(value) * coef1 + dst * coef2 + (0x80 << precisionBits)
        return UInt8(truncatingIfNeeded: (((tmp >> 8) + tmp) >> 8) >> precisionBits)
    }

    /// `compositeOnWhite` for every (value, alpha) pair, indexed by alpha * 256 + value.
    static let compositeTable: [UInt8] = {
        var table = [UInt8](repeating: 0, count: 256 * 256)
        for alpha in 0..<256 {
            for value in 0..<256 {
                table[alpha * 256 + value] = compositeOnWhite(UInt8(value), alpha: UInt8(alpha))
            }
        }
        return table
    }()
}
