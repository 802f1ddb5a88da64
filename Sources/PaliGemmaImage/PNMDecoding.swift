// Netpbm files (PBM/PGM/PPM: P1...P6), parsed like Pillow's PpmImagePlugin.
//
// Samples are scaled to 8 bits with Pillow's formula, round(value / maxval * 255) with
// round-half-to-even. For 16-bit grayscale (maxval > 255) Pillow instead keeps 16-bit
// values and later clips them at 255; here they are scaled like colour samples.
// Bitmaps (P1, P4): 1 is black, 0 is white.

enum PNMDecoding {
    struct Header {
        var kind: UInt8  // the digit after "P"
        var width: Int
        var height: Int
        var maxval: Int
        var dataOffset: Int

        var channels: Int { kind == UInt8(ascii: "3") || kind == UInt8(ascii: "6") ? 3 : 1 }
        var isBitmap: Bool { kind == UInt8(ascii: "1") || kind == UInt8(ascii: "4") }
        var isPlain: Bool { kind <= UInt8(ascii: "3") }
    }

    private static func isSpace(_ c: UInt8) -> Bool {
        c == 0x20 || (0x09...0x0D).contains(c)
    }

    /// A cursor over the file that reads whitespace-separated tokens, skipping comments.
    private struct Tokens {
        let bytes: UnsafeRawBufferPointer
        var pos: Int
        let name: String

        /// The next token (at most 10 characters, like Pillow), consuming the single
        /// whitespace character that ends it.
        mutating func next(_ what: String) throws -> [UInt8] {
            var token: [UInt8] = []
            while pos < bytes.count {
                let c = bytes[pos]
                pos += 1
                if isSpace(c) {
                    if token.isEmpty { continue }
                    return token
                } else if c == UInt8(ascii: "#") {
                    while pos < bytes.count, bytes[pos] != 0x0A, bytes[pos] != 0x0D { pos += 1 }
                    continue
                }
                token.append(c)
                if token.count > 10 {
                    throw ImageError.corrupt(file: name, reason: "PNM \(what): token too long")
                }
            }
            if token.isEmpty {
                throw ImageError.truncated(file: name, reason: "PNM file ends while reading \(what)")
            }
            return token
        }

        mutating func integer(_ what: String) throws -> Int {
            let token = try next(what)
            guard token.allSatisfy({ (0x30...0x39).contains($0) }), let value = Int(String(decoding: token, as: UTF8.self)) else {
                throw ImageError.corrupt(file: name, reason: "PNM \(what) is not a number: \(String(decoding: token, as: UTF8.self))")
            }
            return value
        }
    }

    static func readHeader(_ bytes: UnsafeRawBufferPointer, name: String) throws -> Header {
        guard bytes.count >= 3, bytes[0] == UInt8(ascii: "P"), (UInt8(ascii: "1")...UInt8(ascii: "6")).contains(bytes[1]),
              isSpace(bytes[2]) else {
            throw ImageError.unsupportedFormat(file: name, reason: "not a P1...P6 Netpbm file")
        }
        var tokens = Tokens(bytes: bytes, pos: 3, name: name)
        let kind = bytes[1]
        let width = try tokens.integer("width")
        let height = try tokens.integer("height")
        var maxval = 1
        if kind != UInt8(ascii: "1") && kind != UInt8(ascii: "4") {
            maxval = try tokens.integer("maxval")
            guard maxval > 0, maxval < 65536 else {
                throw ImageError.corrupt(file: name, reason: "PNM maxval must be 1...65535, got \(maxval)")
            }
        }
        return Header(kind: kind, width: width, height: height, maxval: maxval, dataOffset: tokens.pos)
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, budget: PixelBudget) throws -> RGBImage {
        let name = budget.name
        let header = try readHeader(bytes, name: name)
        let pixelCount = try budget.check(width: header.width, height: header.height)
        let sampleCount = pixelCount * header.channels
        let samples: [UInt8]
        if header.isBitmap {
            samples = try bitmap(bytes, header: header, name: name)
        } else if header.isPlain {
            samples = try plain(bytes, header: header, count: sampleCount, name: name)
        } else {
            samples = try binary(bytes, header: header, count: sampleCount, name: name)
        }
        let pixels = header.channels == 3 ? samples : PixelConversion.grayToRGB(samples)
        return RGBImage(uncheckedWidth: header.width, height: header.height, pixels: pixels)
    }

    /// Pillow's scaling: round(value / maxval * 255), ties to even, capped at 255.
    private static func scaleTable(maxval: Int) -> [UInt8] {
        (0...maxval).map { value in
            let scaled = (Double(value) / Double(maxval) * 255).rounded(.toNearestOrEven)
            return UInt8(min(255, scaled))
        }
    }

    private static func binary(_ bytes: UnsafeRawBufferPointer, header: Header, count: Int, name: String) throws -> [UInt8] {
        let wide = header.maxval > 255
        let needed = count * (wide ? 2 : 1)
        let available = bytes.count - header.dataOffset
        guard available >= needed else {
            throw ImageError.truncated(file: name, reason: "PNM pixel data has \(available) of \(needed) bytes")
        }
        let data = UnsafeRawBufferPointer(rebasing: bytes[header.dataOffset..<(header.dataOffset + needed)])
        if header.maxval == 255 {
            return [UInt8](data)
        }
        let table = scaleTable(maxval: header.maxval)
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            let value = wide ? Int(data[2 * i]) << 8 | Int(data[2 * i + 1]) : Int(data[i])
            out[i] = value < table.count ? table[value] : 255
        }
        return out
    }

    private static func plain(_ bytes: UnsafeRawBufferPointer, header: Header, count: Int, name: String) throws -> [UInt8] {
        var tokens = Tokens(bytes: bytes, pos: header.dataOffset, name: name)
        let table = scaleTable(maxval: header.maxval)
        var out = [UInt8](repeating: 0, count: count)
        for i in 0..<count {
            let value = try tokens.integer("pixel \(i / header.channels)")
            guard value <= header.maxval else {
                throw ImageError.corrupt(file: name, reason: "PNM sample \(value) exceeds maxval \(header.maxval)")
            }
            out[i] = table[value]
        }
        return out
    }

    private static func bitmap(_ bytes: UnsafeRawBufferPointer, header: Header, name: String) throws -> [UInt8] {
        let width = header.width, height = header.height
        var out = [UInt8](repeating: 0, count: width * height)
        var pos = header.dataOffset
        if header.isPlain {
            // P1: one '0' or '1' per pixel; whitespace between them is optional.
            var i = 0
            while i < out.count {
                guard pos < bytes.count else {
                    throw ImageError.truncated(file: name, reason: "PBM data ends after \(i) of \(out.count) pixels")
                }
                let c = bytes[pos]
                pos += 1
                if isSpace(c) { continue }
                if c == UInt8(ascii: "#") {
                    while pos < bytes.count, bytes[pos] != 0x0A, bytes[pos] != 0x0D { pos += 1 }
                    continue
                }
                guard c == UInt8(ascii: "0") || c == UInt8(ascii: "1") else {
                    throw ImageError.corrupt(file: name, reason: "PBM pixel must be 0 or 1, found byte \(c)")
                }
                out[i] = c == UInt8(ascii: "1") ? 0 : 255
                i += 1
            }
            return out
        }
        // P4: rows of packed bits, most significant first, padded to whole bytes.
        let rowBytes = (width + 7) / 8
        let needed = rowBytes * height
        guard bytes.count - pos >= needed else {
            throw ImageError.truncated(file: name, reason: "PBM pixel data has \(bytes.count - pos) of \(needed) bytes")
        }
        for y in 0..<height {
            for x in 0..<width {
                let byte = bytes[pos + y * rowBytes + x / 8]
                let bit = (byte >> (7 - UInt8(x % 8))) & 1
                out[y * width + x] = bit == 1 ? 0 : 255
            }
        }
        return out
    }
}
