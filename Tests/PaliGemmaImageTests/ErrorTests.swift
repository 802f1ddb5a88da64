// Bad input: every failure is a typed ImageError naming the file, never a crash.
import Foundation
import Testing
@testable import PaliGemmaImage

/// Decodes and returns the error, or nil when decoding succeeded.
private func decodeError(_ data: Data, name: String = "bad.img", options: DecodeOptions = DecodeOptions()) -> ImageError? {
    do {
        _ = try ImageDecoder.decode(data: data, name: name, options: options)
        return nil
    } catch let error as ImageError {
        return error
    } catch {
        Issue.record("untyped error \(error)")
        return nil
    }
}

/// A deterministic xorshift generator for the corruption loops.
private struct XorShift {
    var state: UInt64
    mutating func next(_ bound: Int) -> Int {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return Int(state % UInt64(bound))
    }
}

@Suite struct ErrorTests {
    static let jpeg = (try? Data(contentsOf: Fixtures.url("decode/jpeg_420.jpg"))) ?? Data()
    static let progressive = (try? Data(contentsOf: Fixtures.url("decode/jpeg_progressive.jpg"))) ?? Data()
    static let png = (try? Data(contentsOf: Fixtures.url("decode/png_rgba8.png"))) ?? Data()
    static let interlaced = (try? Data(contentsOf: Fixtures.url("decode/png_interlaced_rgb8.png"))) ?? Data()

    @Test(arguments: [("jpeg", jpeg), ("progressive", progressive), ("png", png), ("interlaced", interlaced)])
    func truncatedFilesReportTruncation(_ kind: String, _ data: Data) throws {
        try #require(data.count > 200)
        for length in [data.count / 3, data.count / 2, data.count - 40] {
            let error = try #require(decodeError(data.prefix(length), name: "cut.\(kind)"), "\(kind) cut to \(length) decoded")
            guard case .truncated(let file, let reason) = error else {
                Issue.record("\(kind) cut to \(length): expected .truncated, got \(error)")
                continue
            }
            #expect(file == "cut.\(kind)")
            print("\(kind) cut to \(length) of \(data.count) bytes: \(reason)")
        }
        for length in [0, 1, 2, 5, 20] {
            #expect(decodeError(data.prefix(length)) != nil, "\(kind) cut to \(length) bytes decoded")
        }
    }

    /// Pillow reports a JPEG without its EOI marker as truncated; so does the decoder. A
    /// PNG without IEND loads in Pillow, and here too.
    @Test func missingEndMarkersBehaveLikePillow() throws {
        let data = Self.jpeg
        try #require(data.suffix(2) == Data([0xFF, 0xD9]))
        let error = try #require(decodeError(data.dropLast(2), name: "no-eoi.jpg"))
        guard case .truncated = error else {
            Issue.record("expected .truncated, got \(error)")
            return
        }
        let full = try ImageDecoder.decode(data: Self.png, name: "full.png")
        #expect(try ImageDecoder.decode(data: Self.png.dropLast(12), name: "no-iend.png") == full)
    }

    /// Random byte corruption anywhere: each result is an image or an ImageError.
    @Test(arguments: [("jpeg", jpeg), ("progressive", progressive), ("png", png), ("interlaced", interlaced)])
    func corruptedFilesNeverCrash(_ kind: String, _ data: Data) throws {
        try #require(!data.isEmpty)
        var rng = XorShift(state: 0x9E37_79B9_7F4A_7C15)
        var decoded = 0, failed = 0
        for round in 0..<150 {
            var bytes = [UInt8](data)
            for _ in 0..<(1 + round % 8) {
                bytes[rng.next(bytes.count)] = UInt8(rng.next(256))
            }
            // Keep the signature so the codec (not the sniffer) sees the damage.
            bytes.replaceSubrange(0..<4, with: data.prefix(4))
            if decodeError(Data(bytes), options: DecodeOptions(maxPixels: 4_000_000)) == nil { decoded += 1 } else { failed += 1 }
        }
        print("\(kind): 150 corrupted copies, \(decoded) decoded, \(failed) rejected with ImageError")
        #expect(decoded + failed == 150)
    }

    @Test func zeroSizeImagesAreRejected() throws {
        let pnm = try #require(decodeError(Data("P6\n0 5\n255\n".utf8), name: "zero.ppm"))
        #expect(pnm == .emptyImage(file: "zero.ppm", width: 0, height: 5))
        // PNG and JPEG headers with a zero dimension: the codecs reject them.
        var png = [UInt8](Self.png)
        png.replaceSubrange(16..<20, with: [0, 0, 0, 0])  // IHDR width
        let pngError = try #require(decodeError(Data(png), name: "zero.png"))
        #expect(pngError.description.hasPrefix("zero.png: "))
        var jpeg = [UInt8](Self.jpeg)
        let sof = try #require((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg.replaceSubrange((sof + 5)..<(sof + 7), with: [0, 0])  // SOF0 height
        let jpegError = try #require(decodeError(Data(jpeg), name: "zero.jpg"))
        print("zero-size errors: \(pnm) | \(pngError) | \(jpegError)")
        #expect(jpegError.description.hasPrefix("zero.jpg: "))
    }

    @Test func imagesOverThePixelBudgetAreRejectedBeforeDecoding() throws {
        // A real 512x384 JPEG over a small budget.
        let photo = try Data(contentsOf: Fixtures.url("decode/jpeg_photo.jpg"))
        let small = try #require(decodeError(photo, name: "photo.jpg", options: DecodeOptions(maxPixels: 100_000)))
        #expect(small == .tooManyPixels(file: "photo.jpg", width: 512, height: 384, limit: 100_000))
        #expect(decodeError(photo, options: DecodeOptions(maxPixels: nil)) == nil)
        // Bombs: headers claiming 100000x100000 pixels with almost no data, default budget.
        var png = [UInt8](Self.png)
        png.replaceSubrange(16..<24, with: [0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0])
        let crc = CRC32.checksum(png[12..<29])
        png.replaceSubrange(29..<33, with: [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)])
        let bomb = try #require(decodeError(Data(png), name: "bomb.png"))
        #expect(bomb == .tooManyPixels(file: "bomb.png", width: 100_000, height: 100_000, limit: DecodeOptions.pillowErrorPixels))
        let ppm = try #require(decodeError(Data("P6 100000 100000 255\n".utf8), name: "bomb.ppm"))
        #expect(ppm == .tooManyPixels(file: "bomb.ppm", width: 100_000, height: 100_000, limit: DecodeOptions.pillowErrorPixels))
        print("budget errors: \(small) | \(bomb)")
    }

    @Test func unsupportedAndUnreadableInputsAreNamed() throws {
        let gif = try #require(decodeError(Data("GIF89a\u{1}\u{0}\u{1}\u{0}".utf8), name: "anim.gif"))
        guard case .unsupportedFormat(let file, let reason) = gif else {
            Issue.record("expected unsupportedFormat, got \(gif)")
            return
        }
        #expect(file == "anim.gif" && reason.contains("GIF"))
        #expect(decodeError(Data(), name: "empty") == .truncated(file: "empty", reason: "file is empty"))
        let missing = URL(fileURLWithPath: "/nonexistent/dir/photo.jpg")
        #expect(throws: ImageError.self) { try ImageDecoder.decode(contentsOf: missing) }
        do {
            _ = try ImageDecoder.decode(contentsOf: missing)
        } catch let error as ImageError {
            guard case .unreadable(let file, _) = error else { Issue.record("got \(error)"); return }
            #expect(file == missing.path)
        }
        // Malformed PNM headers and data.
        for (text, name) in [("P6\n4 4\n0\n", "maxval0.ppm"), ("P6\n4 x\n255\n", "nan.ppm"), ("P6\n4 4\n255\nabc", "short.ppm"),
                             ("P3\n2 1\n255\n1 2 3 4 5 300\n", "big.ppm"), ("P1\n3 1\n1 0 2\n", "bad.pbm"), ("P5\n4", "eof.pgm")] {
            let error = try #require(decodeError(Data(text.utf8), name: name), "\(name) decoded")
            #expect(error.description.hasPrefix("\(name): "))
        }
    }
}

@Suite struct OutputTests {
    @Test func pngWriterRoundTripsEveryLayout() throws {
        let image = TestImages.pattern(width: 37, height: 23)
        let decoded = try ImageDecoder.decode(data: PNGWriter.encode(image), name: "rgb.png")
        #expect(decoded == image)
        let gray = (0..<(37 * 23)).map { UInt8($0 % 256) }
        let grayPNG = try PNGWriter.encode(pixels: gray, width: 37, height: 23, layout: .gray)
        #expect(try ImageDecoder.decode(data: grayPNG, name: "gray.png").pixels == PixelConversion.grayToRGB(gray))
        // RGBA comes back composited onto white, like any transparent input.
        var rgba = [UInt8]()
        for i in 0..<(37 * 23) { rgba += [image.pixels[i * 3], image.pixels[i * 3 + 1], image.pixels[i * 3 + 2], UInt8(i % 256)] }
        let back = try ImageDecoder.decode(data: PNGWriter.encode(pixels: rgba, width: 37, height: 23, layout: .rgba), name: "a")
        for i in 0..<(37 * 23) {
            for c in 0..<3 {
                #expect(back.pixels[i * 3 + c] == PixelConversion.compositeOnWhite(rgba[i * 4 + c], alpha: rgba[i * 4 + 3]))
            }
        }
        #expect(throws: ImageError.self) { try PNGWriter.encode(pixels: [1, 2], width: 2, height: 2, layout: .gray) }
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("pg-image-\(UUID().uuidString).png")
        defer { try? FileManager.default.removeItem(at: url) }
        try PNGWriter.write(image, to: url)
        #expect(try ImageDecoder.decode(contentsOf: url) == image)
        #expect(throws: ImageError.self) { try PNGWriter.write(image, to: URL(fileURLWithPath: "/nonexistent/x.png")) }
    }

    @Test func rectanglesAndMasksPaintTheRightPixels() throws {
        var image = RGBImage(width: 20, height: 10, fill: (0, 0, 0))
        image.drawRectangle(x0: 2, y0: 1, x1: 8, y1: 6, color: RGBColor(255, 0, 0), lineWidth: 1)
        #expect(image.pixel(x: 2, y: 1)! == (255, 0, 0))
        #expect(image.pixel(x: 8, y: 6)! == (255, 0, 0))
        #expect(image.pixel(x: 5, y: 3)! == (0, 0, 0))  // inside stays untouched
        #expect(image.pixel(x: 9, y: 6)! == (0, 0, 0))
        image.fillRectangle(x0: -5, y0: -5, x1: 100, y1: 0, color: .white, opacity: 0.5)  // clipped
        #expect(image.pixel(x: 19, y: 0)! == (128, 128, 128))
        // A 2x2 mask stretched over a 4x4 box: only its top-left quarter is set.
        try image.blendMask([1, 0, 0, 0], maskWidth: 2, maskHeight: 2, x0: 12, y0: 2, x1: 15, y1: 5,
                            color: RGBColor(0, 0, 200), opacity: 0.5)
        #expect(image.pixel(x: 12, y: 2)! == (0, 0, 100))
        #expect(image.pixel(x: 13, y: 3)! == (0, 0, 100))
        #expect(image.pixel(x: 14, y: 2)! == (0, 0, 0))
        #expect(throws: ImageError.self) {
            try image.blendMask([1], maskWidth: 2, maskHeight: 2, x0: 0, y0: 0, x1: 1, y1: 1, color: .white)
        }
        try image.blendMask([1, 1, 1, 1], maskWidth: 2, maskHeight: 2, x0: 500, y0: 500, x1: 600, y1: 600, color: .white)
    }

    @Test func bitmapFontCoversPrintableASCII() {
        #expect(BitmapFont.glyphs.count == 95)
        #expect(BitmapFont.glyphs.allSatisfy { $0.count == 7 && $0.allSatisfy { $0 < 32 } })
        #expect(Set(BitmapFont.glyphs.dropFirst()).count == 94)  // every visible glyph distinct
        var image = RGBImage(width: 40, height: 12, fill: (0, 0, 0))
        image.drawText("Hi", x: 0, y: 0, color: .white, scale: 1)
        // "H" row 0 is 10001: font pixel (0,0) lands at image (1, 1) after padding.
        #expect(image.pixel(x: 1, y: 1)! == (255, 255, 255))
        #expect(image.pixel(x: 2, y: 1)! == (0, 0, 0))
        #expect(image.pixel(x: 5, y: 1)! == (255, 255, 255))
        let lit = stride(from: 0, to: image.pixels.count, by: 3).filter { image.pixels[$0] == 255 }.count
        #expect(lit == 17 + 9)  // pixels set in "H" plus "i"
        #expect(BitmapFont.size(of: "Hi", scale: 2) == (26, 18))
        image.drawLabeledBox(x0: 3, y0: 3, x1: 30, y1: 10, label: "cat é", color: RGBColor.palette[1])
    }
}
