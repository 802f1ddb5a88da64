// EXIF orientation (tag 0x0112), read from a JPEG APP1 "Exif" segment or a PNG eXIf
// chunk, and applied the way Pillow's ImageOps.exif_transpose does. Only used when
// DecodeOptions.applyEXIFOrientation is set: Pillow's Image.open ignores it.

/// The eight EXIF orientations; the raw value is the tag value.
public enum EXIFOrientation: Int, Sendable {
    case up = 1, mirrored = 2, down = 3, downMirrored = 4
    case leftMirrored = 5, right = 6, rightMirrored = 7, left = 8

    // Names follow Pillow's transposition for each value:
    // 2 FLIP_LEFT_RIGHT, 3 ROTATE_180, 4 FLIP_TOP_BOTTOM, 5 TRANSPOSE,
    // 6 ROTATE_270, 7 TRANSVERSE, 8 ROTATE_90.

    /// The first APP1 segment starting with "Exif\0\0", like Pillow.
    static func fromJPEG(_ bytes: UnsafeRawBufferPointer) -> EXIFOrientation? {
        var pos = 2
        while pos + 4 <= bytes.count {
            guard bytes[pos] == 0xFF else { return nil }
            let marker = bytes[pos + 1]
            if marker == 0xFF { pos += 1; continue }  // fill byte
            if marker == 0xD8 || (0xD0...0xD7).contains(marker) || marker == 0x01 { pos += 2; continue }
            if marker == 0xDA || marker == 0xD9 { return nil }  // start of scan / end of image
            let length = Int(bytes[pos + 2]) << 8 | Int(bytes[pos + 3])
            guard length >= 2, pos + 2 + length <= bytes.count else { return nil }
            let segment = UnsafeRawBufferPointer(rebasing: bytes[(pos + 4)..<(pos + 2 + length)])
            if marker == 0xE1, segment.starts(with: [0x45, 0x78, 0x69, 0x66, 0, 0]) {
                return fromTIFF(UnsafeRawBufferPointer(rebasing: segment[6...]))
            }
            pos += 2 + length
        }
        return nil
    }

    /// The eXIf chunk of a PNG (with or without a leading "Exif\0\0").
    static func fromPNG(_ bytes: UnsafeRawBufferPointer) -> EXIFOrientation? {
        var pos = 8
        while pos + 12 <= bytes.count {
            let length = Int(bytes[pos]) << 24 | Int(bytes[pos + 1]) << 16 | Int(bytes[pos + 2]) << 8 | Int(bytes[pos + 3])
            let type = Array(bytes[(pos + 4)..<(pos + 8)])
            guard length >= 0, length <= bytes.count - pos - 12 else { return nil }
            if type == Array("eXIf".utf8) {
                var chunk = UnsafeRawBufferPointer(rebasing: bytes[(pos + 8)..<(pos + 8 + length)])
                if chunk.starts(with: [0x45, 0x78, 0x69, 0x66, 0, 0]) {
                    chunk = UnsafeRawBufferPointer(rebasing: chunk[6...])
                }
                return fromTIFF(chunk)
            }
            if type == Array("IEND".utf8) { return nil }
            pos += 12 + length
        }
        return nil
    }

    /// Finds tag 0x0112 in IFD0 of a TIFF structure.
    static func fromTIFF(_ tiff: UnsafeRawBufferPointer) -> EXIFOrientation? {
        guard tiff.count >= 8 else { return nil }
        let little: Bool
        switch (tiff[0], tiff[1]) {
        case (0x49, 0x49): little = true
        case (0x4D, 0x4D): little = false
        default: return nil
        }
        func u16(_ at: Int) -> Int? {
            guard at >= 0, at + 2 <= tiff.count else { return nil }
            return little ? Int(tiff[at]) | Int(tiff[at + 1]) << 8 : Int(tiff[at]) << 8 | Int(tiff[at + 1])
        }
        func u32(_ at: Int) -> Int? {
            guard let a = u16(at), let b = u16(at + 2) else { return nil }
            return little ? a | b << 16 : a << 16 | b
        }
        guard u16(2) == 42, let ifd = u32(4), let count = u16(ifd) else { return nil }
        for entry in 0..<count {
            let at = ifd + 2 + entry * 12
            guard let tag = u16(at) else { return nil }
            if tag == 0x0112 {
                guard let type = u16(at + 2), type == 3, let value = u16(at + 8) else { return nil }
                return EXIFOrientation(rawValue: value)
            }
        }
        return nil
    }
}

extension RGBImage {
    /// The image transposed so that an image with `orientation` displays upright.
    public func applying(_ orientation: EXIFOrientation) -> RGBImage {
        let w = width, h = height
        let swaps = orientation.rawValue >= 5
        let outW = swaps ? h : w, outH = swaps ? w : h
        // Source coordinates of output pixel (x, y).
        let source: (Int, Int) -> (Int, Int)
        switch orientation {
        case .up: return self
        case .mirrored: source = { x, y in (w - 1 - x, y) }
        case .down: source = { x, y in (w - 1 - x, h - 1 - y) }
        case .downMirrored: source = { x, y in (x, h - 1 - y) }
        case .leftMirrored: source = { x, y in (y, x) }
        case .right: source = { x, y in (y, h - 1 - x) }
        case .rightMirrored: source = { x, y in (w - 1 - y, h - 1 - x) }
        case .left: source = { x, y in (w - 1 - y, x) }
        }
        var out = [UInt8](repeating: 0, count: pixels.count)
        pixels.withUnsafeBufferPointer { src in
            for y in 0..<outH {
                for x in 0..<outW {
                    let (sx, sy) = source(x, y)
                    let s = (sy * w + sx) * 3, d = (y * outW + x) * 3
                    out[d] = src[s]
                    out[d + 1] = src[s + 1]
                    out[d + 2] = src[s + 2]
                }
            }
        }
        return RGBImage(uncheckedWidth: outW, height: outH, pixels: out)
    }
}
