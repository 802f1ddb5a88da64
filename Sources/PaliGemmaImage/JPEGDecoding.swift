// JPEG via libjpeg-turbo with Pillow's settings, then Pillow's conversion to RGB:
// grayscale is replicated, CMYK (always treated as Adobe-inverted, "CMYK;I") goes
// through Pillow's cmyk2rgb.
import CImageCodecs

enum JPEGDecoding {
    static func readInfo(_ bytes: UnsafeRawBufferPointer, name: String) throws -> pgc_jpeg_info {
        var info = pgc_jpeg_info()
        let base = bytes.bindMemory(to: UInt8.self).baseAddress
        try CodecCall.run(name: name, what: "JPEG header") { err in
            pgc_jpeg_read_info(base, bytes.count, &info, err)
        }
        return info
    }

    static func decode(_ bytes: UnsafeRawBufferPointer, budget: PixelBudget) throws -> RGBImage {
        let name = budget.name
        let info = try readInfo(bytes, name: name)
        let width = Int(info.width), height = Int(info.height)
        let pixelCount = try budget.check(width: width, height: height)
        let components = Int(info.components)
        let base = bytes.bindMemory(to: UInt8.self).baseAddress

        let raw = try [UInt8].filled(count: pixelCount * components) { out in
            try CodecCall.run(name: name, what: "JPEG data") { err in
                pgc_jpeg_decode(base, bytes.count, out.baseAddress, out.count, err)
            }
        }
        switch components {
        case 3:
            return RGBImage(uncheckedWidth: width, height: height, pixels: raw)
        case 1:
            return RGBImage(uncheckedWidth: width, height: height, pixels: PixelConversion.grayToRGB(raw))
        default:
            return RGBImage(uncheckedWidth: width, height: height, pixels: PixelConversion.invertedCMYKToRGB(raw))
        }
    }
}
