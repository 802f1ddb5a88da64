// PNG via libpng (raw samples), then the conversion transformers' processor applies to
// Pillow's PNG modes:
//
// * Images with transparency (an alpha channel, or a tRNS chunk) are alpha-composited
//   onto opaque white with Pillow's integer `alpha_composite`; others are converted
//   with `convert("RGB")` (palette looked up, grayscale replicated).
// * Bit depths below 8 are scaled as Pillow unpacks them (1-bit: 0/255, 2-bit: x85,
//   4-bit: x17); palette indices are not scaled.
// * A grayscale tRNS value is compared, as in Pillow, with the *scaled* 8-bit value for
//   1/2/4/8-bit images (so for 2- and 4-bit images only a tRNS value of 0, or one that
//   equals a scaled level, marks pixels transparent).
// * 16-bit samples are reduced to their high byte (sample >> 8). That is what Pillow
//   does for 16-bit RGB, RGBA and gray+alpha; for 16-bit grayscale Pillow instead clips
//   values above 255 to white, a quirk deliberately not copied. A 16-bit tRNS colour is
//   compared with the full 16-bit samples.
import CImageCodecs

enum PNGDecoding {
    static func readInfo(_ bytes: UnsafeRawBufferPointer, name: String) throws -> pgc_png_info {
        var info = pgc_png_info()
        let base = bytes.bindMemory(to: UInt8.self).baseAddress
        try CodecCall.run(name: name, what: "PNG header") { err in
            pgc_png_read_info(base, bytes.count, &info, err)
        }
        return info
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, budget: PixelBudget) throws -> RGBImage {
        let name = budget.name
        let info = try readInfo(bytes, name: name)
        let width = Int(info.width), height = Int(info.height)
        let pixelCount = try budget.check(width: width, height: height)
        let channels = Int(info.channels)
        let depth = Int(info.bit_depth)
        guard [1, 2, 4, 8, 16].contains(depth), (1...4).contains(channels) else {
            throw ImageError.unsupportedFormat(file: name, reason: "PNG with bit depth \(depth) and \(channels) channels")
        }
        let bytesPerSample = depth == 16 ? 2 : 1
        let base = bytes.bindMemory(to: UInt8.self).baseAddress
        let raw = try [UInt8].filled(count: pixelCount * channels * bytesPerSample) { out in
            try CodecCall.run(name: name, what: "PNG data") { err in
                pgc_png_decode(base, bytes.count, out.baseAddress, out.count, err)
            }
        }
        let samples = Samples(raw: raw, depth: depth)
        let pixels: [UInt8]
        switch Int(info.color_type) {
        case 0: pixels = gray(samples, count: pixelCount, info: info)
        case 2: pixels = rgb(samples, count: pixelCount, info: info)
        case 3: pixels = palette(raw, info: info)
        case 4: pixels = composited(samples, count: pixelCount, colorChannels: 1)
        case 6: pixels = composited(samples, count: pixelCount, colorChannels: 3)
        default:
            throw ImageError.unsupportedFormat(file: name, reason: "PNG colour type \(info.color_type)")
        }
        return RGBImage(uncheckedWidth: width, height: height, pixels: pixels)
    }

    /// Raw samples in the file's bit depth.
    struct Samples {
        let raw: [UInt8]
        let depth: Int

        /// The raw sample value (unscaled).
        @inline(__always)
        func value(_ i: Int) -> Int {
            depth == 16 ? Int(raw[2 * i]) << 8 | Int(raw[2 * i + 1]) : Int(raw[i])
        }

        /// The sample as Pillow's 8-bit mode holds it.
        @inline(__always)
        func byte(_ i: Int) -> UInt8 {
            switch depth {
            case 16: return raw[2 * i]
            case 8: return raw[i]
            case 4: return raw[i] &* 17
            case 2: return raw[i] &* 85
            default: return raw[i] != 0 ? 255 : 0
            }
        }
    }

    private static func gray(_ s: Samples, count: Int, info: pgc_png_info) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count * 3)
        let hasTransparency = info.has_trans_color != 0
        let trns = Int(info.trans_gray)
        // Pillow keeps 1-bit images as mode "1" with transparency 255 if the tRNS gray is
        // nonzero, else 0; 2/4/8-bit ones compare the scaled value with the raw tRNS value.
        let target = s.depth == 1 ? (trns != 0 ? 255 : 0) : trns
        for i in 0..<count {
            var v = s.byte(i)
            if hasTransparency {
                let transparent = s.depth == 16 ? s.value(i) == trns : Int(v) == target
                v = PixelConversion.compositeOnWhite(v, alpha: transparent ? 0 : 255)
            }
            out[i * 3] = v
            out[i * 3 + 1] = v
            out[i * 3 + 2] = v
        }
        return out
    }

    private static func rgb(_ s: Samples, count: Int, info: pgc_png_info) -> [UInt8] {
        if s.depth == 8 && info.has_trans_color == 0 {
            return s.raw
        }
        var out = [UInt8](repeating: 0, count: count * 3)
        let hasTransparency = info.has_trans_color != 0
        let key = (Int(info.trans_red), Int(info.trans_green), Int(info.trans_blue))
        for i in 0..<count {
            var r = s.byte(i * 3), g = s.byte(i * 3 + 1), b = s.byte(i * 3 + 2)
            if hasTransparency {
                let transparent = s.value(i * 3) == key.0 && s.value(i * 3 + 1) == key.1 && s.value(i * 3 + 2) == key.2
                let alpha: UInt8 = transparent ? 0 : 255
                r = PixelConversion.compositeOnWhite(r, alpha: alpha)
                g = PixelConversion.compositeOnWhite(g, alpha: alpha)
                b = PixelConversion.compositeOnWhite(b, alpha: alpha)
            }
            out[i * 3] = r
            out[i * 3 + 1] = g
            out[i * 3 + 2] = b
        }
        return out
    }

    /// Palette images: Pillow's palette has 256 entries, black and opaque beyond PLTE;
    /// tRNS gives the alpha of the first entries.
    private static func palette(_ indices: [UInt8], info: pgc_png_info) -> [UInt8] {
        var table = [UInt8](repeating: 0, count: 256 * 3)
        var alpha = [UInt8](repeating: 255, count: 256)
        withUnsafeBytes(of: info.palette) { pal in
            for i in 0..<min(256, Int(info.num_palette)) * 3 {
                table[i] = pal[i]
            }
        }
        withUnsafeBytes(of: info.trans_alpha) { trans in
            for i in 0..<min(256, Int(info.num_trans)) {
                alpha[i] = trans[i]
            }
        }
        if info.num_trans > 0 {
            for i in 0..<256 {
                for c in 0..<3 {
                    table[i * 3 + c] = PixelConversion.compositeOnWhite(table[i * 3 + c], alpha: alpha[i])
                }
            }
        }
        var out = [UInt8](repeating: 0, count: indices.count * 3)
        for (i, index) in indices.enumerated() {
            let p = Int(index) * 3
            out[i * 3] = table[p]
            out[i * 3 + 1] = table[p + 1]
            out[i * 3 + 2] = table[p + 2]
        }
        return out
    }

    /// Gray+alpha (colorChannels 1) or RGBA (3): composite onto white.
    private static func composited(_ s: Samples, count: Int, colorChannels: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count * 3)
        let stride = colorChannels + 1
        PixelConversion.compositeTable.withUnsafeBufferPointer { table in
            for i in 0..<count {
                let a = Int(s.byte(i * stride + colorChannels)) * 256
                if colorChannels == 1 {
                    let v = table[a + Int(s.byte(i * stride))]
                    out[i * 3] = v
                    out[i * 3 + 1] = v
                    out[i * 3 + 2] = v
                } else {
                    out[i * 3] = table[a + Int(s.byte(i * stride))]
                    out[i * 3 + 1] = table[a + Int(s.byte(i * stride + 1))]
                    out[i * 3 + 2] = table[a + Int(s.byte(i * stride + 2))]
                }
            }
        }
        return out
    }
}
