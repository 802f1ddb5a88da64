import Foundation
import PaliGemmaJSON

// Structured results of `detect` / `segment` answers: boxes in pixels and normalised,
// masks (64x64 decoder output and the full-image mask with its COCO RLE), JSON, a plain
// text summary, mask PNGs and an overlay image. Conventions in docs/OUTPUTS.md.

/// A detected object: every parsed object with a valid box, with or without a mask.
public struct Detection: Sendable, Equatable {
    public let label: String
    /// Pixels of the original image, unrounded: code / 1023 * width (x) or height (y).
    public let box: PixelBox
    /// code / 1023.
    public let normalizedBox: NormalizedBox
    /// The model's codes: y_min, x_min, y_max, x_max.
    public let locs: [Int]
    /// Index of this object's entry in `TaskResult.segments`, when it has one.
    public let segmentIndex: Int?
}

/// A segmented object: a detection that came with 16 valid `<seg>` codes.
public struct Segment: Sendable, Equatable {
    public let label: String
    public let box: PixelBox
    public let normalizedBox: NormalizedBox
    public let locs: [Int]
    public let segCodes: [Int]
    /// big_vision's pixel box for the mask (truncated; may be empty).
    public let maskBox: MaskBox
    /// The decoder's 64x64 output (row-major, about [-1, 1]); nil without a checkpoint.
    public let mask64: [Float]?
    /// The full-image binary mask; nil without a checkpoint.
    public let mask: BinaryMask?
}

/// Everything parsed from one answer.
public struct TaskResult: Sendable, Equatable {
    public let imageWidth: Int
    public let imageHeight: Int
    public let detections: [Detection]
    public let segments: [Segment]
    public let skipped: [SkippedPiece]
    /// Whether masks were decoded (a checkpoint was given).
    public let masksDecoded: Bool
}

public enum TaskOutput {
    /// Parses generated text for an image of the given size. Objects with seg codes get
    /// masks when `maskDecoder` is given. Throws only for a non-positive image size.
    public static func parse(text: String, imageWidth: Int, imageHeight: Int, maskDecoder: MaskDecoder?) throws -> TaskResult {
        guard imageWidth > 0, imageHeight > 0 else {
            throw PaliGemmaError.input("image size \(imageWidth)x\(imageHeight) must be positive")
        }
        let (objects, skipped) = DetectionParser.parse(text)
        var detections: [Detection] = [], segments: [Segment] = []
        for object in objects {
            let normalized = object.normalizedBox
            let box = normalized.pixels(width: imageWidth, height: imageHeight)
            guard let codes = object.segCodes else {
                detections.append(Detection(label: object.label, box: box, normalizedBox: normalized, locs: object.locs, segmentIndex: nil))
                continue
            }
            detections.append(Detection(label: object.label, box: box, normalizedBox: normalized, locs: object.locs,
                                        segmentIndex: segments.count))
            var mask64: [Float]?, mask: BinaryMask?
            if let maskDecoder {
                let m = try maskDecoder.decode(codes: codes)
                mask64 = m
                mask = try MaskPlacement.place(mask64: m, locs: object.locs, imageWidth: imageWidth, imageHeight: imageHeight)
            }
            segments.append(Segment(label: object.label, box: box, normalizedBox: normalized, locs: object.locs, segCodes: codes,
                                    maskBox: MaskPlacement.pixelBox(locs: object.locs, imageWidth: imageWidth, imageHeight: imageHeight),
                                    mask64: mask64, mask: mask))
        }
        return TaskResult(imageWidth: imageWidth, imageHeight: imageHeight, detections: detections,
                          segments: segments, skipped: skipped, masksDecoded: maskDecoder != nil)
    }

    /// Whether text holds any `<seg>` token (so a mask decoder is worth loading).
    public static func mentionsSegments(_ text: String) -> Bool { text.contains("<seg") }

    /// Parses "WIDTHxHEIGHT" (e.g. "640x480").
    public static func parseImageSize(_ text: String) throws -> (width: Int, height: Int) {
        let parts = text.lowercased().split(separator: "x", omittingEmptySubsequences: false)
        guard parts.count == 2, let w = Int(parts[0]), let h = Int(parts[1]), w > 0, h > 0, w <= 1 << 16, h <= 1 << 16 else {
            throw PaliGemmaError.input("image size '\(text)' is not WIDTHxHEIGHT with positive integers up to 65536, e.g. 640x480")
        }
        return (w, h)
    }
}

// MARK: - JSON and text

/// The JSON object of a result (docs/OUTPUTS.md):
/// {"image_size": [w, h], "detections": [...], "segments": [...], "skipped": [...], "masks_decoded": bool}.
/// Its members can join a larger object: `GenerationOutput` writes them beside the answer's.
extension TaskResult: Encodable {
    enum CodingKeys: String, CodingKey {
        case imageSize = "image_size", detections, segments, skipped, masksDecoded = "masks_decoded"
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode([imageWidth, imageHeight], forKey: .imageSize)
        try c.encode(detections, forKey: .detections)
        try c.encode(segments, forKey: .segments)
        try c.encode(skipped, forKey: .skipped)
        try c.encode(masksDecoded, forKey: .masksDecoded)
    }

    /// The result as one line of JSON (`JSONOutput`).
    public func json() throws -> String { try JSONOutput.string(self) }
}

/// {"label", "box": [x_min, y_min, x_max, y_max] in pixels, "box_normalized": [...] in 0...1}.
extension Detection: Encodable {
    enum CodingKeys: String, CodingKey { case label, box, boxNormalized = "box_normalized" }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(label, forKey: .label)
        try c.encode(box.json, forKey: .box)
        try c.encode(normalizedBox.json, forKey: .boxNormalized)
    }
}

/// As a detection, plus "mask_box": [x1, y1, x2, y2], "seg_codes": [16], and "mask64": [[64] x 64],
/// "mask_rle": {"size": [h, w], "counts"}, "area" — each null when no mask was decoded.
extension Segment: Encodable {
    enum CodingKeys: String, CodingKey {
        case label, box, boxNormalized = "box_normalized", maskBox = "mask_box", segCodes = "seg_codes"
        case mask64, maskRLE = "mask_rle", area
    }

    /// COCO's compressed RLE of a full-image mask.
    struct RLE: Encodable {
        let size: [Int]
        let counts: String
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(label, forKey: .label)
        try c.encode(box.json, forKey: .box)
        try c.encode(normalizedBox.json, forKey: .boxNormalized)
        try c.encode([maskBox.x1, maskBox.y1, maskBox.x2, maskBox.y2], forKey: .maskBox)
        try c.encode(segCodes, forKey: .segCodes)
        // Optionals through encode(_:forKey:), so that a missing mask is written as null.
        let rows = mask64.map { m in stride(from: 0, to: m.count, by: 64).map { m[$0..<min($0 + 64, m.count)].map(FiniteOrNull.init) } }
        try c.encode(rows, forKey: .mask64)
        try c.encode(mask.map { RLE(size: [$0.height, $0.width], counts: $0.cocoCounts) }, forKey: .maskRLE)
        try c.encode(mask?.area, forKey: .area)
    }
}

extension PixelBox {
    /// [x_min, y_min, x_max, y_max].
    var json: [FiniteOrNull<Double>] { [xMin, yMin, xMax, yMax].map(FiniteOrNull.init) }
}

extension NormalizedBox {
    /// [x_min, y_min, x_max, y_max].
    var json: [FiniteOrNull<Double>] { [xMin, yMin, xMax, yMax].map(FiniteOrNull.init) }
}

extension TaskResult {
    /// A short human-readable account, one line per object.
    public func summary() -> String {
        var lines: [String] = []
        let noun = detections.count == 1 ? "object" : "objects"
        lines.append("\(detections.count) \(noun) in \(imageWidth)x\(imageHeight) (boxes x_min,y_min - x_max,y_max in pixels):")
        let width = max(5, detections.map(\.label.count).max() ?? 0)
        for d in detections {
            var line = "  " + (d.label.isEmpty ? "(no label)" : d.label).padding(toLength: width, withPad: " ", startingAt: 0)
            line += "  " + String(format: "%.1f,%.1f - %.1f,%.1f", d.box.xMin, d.box.yMin, d.box.xMax, d.box.yMax)
            if let index = d.segmentIndex {
                if let mask = segments[index].mask {
                    line += "  mask \(mask.area) px (\(String(format: "%.1f", 100 * Double(mask.area) / Double(imageWidth * imageHeight)))%)"
                } else {
                    line += "  mask not decoded"
                }
            }
            lines.append(line)
        }
        for s in skipped { lines.append("  skipped \"\(s.text)\": \(s.reason)") }
        if !masksDecoded && !segments.isEmpty { lines.append("  (no mask decoder checkpoint: masks not decoded)") }
        return lines.joined(separator: "\n")
    }
}

// MARK: - Images

extension TaskResult {
    /// Boxes, labels (built-in font) and translucent masks drawn over `image` (which must
    /// be imageWidth x imageHeight), or over a dark grey canvas when nil.
    public func overlay(on image: RGBImage? = nil, maskOpacity: Double = 0.45) throws -> RGBImage {
        var canvas = image ?? RGBImage(width: imageWidth, height: imageHeight, fill: (48, 48, 48))
        guard canvas.width == imageWidth, canvas.height == imageHeight else {
            throw PaliGemmaError.input("overlay image is \(canvas.width)x\(canvas.height), but the boxes are for \(imageWidth)x\(imageHeight)")
        }
        let colors = RGBColor.palette
        var boxes: [(Detection, RGBColor)] = []
        for (i, d) in detections.enumerated() {
            let color = colors[i % colors.count]
            if let index = d.segmentIndex, let mask = segments[index].mask {
                try canvas.blendMask(mask.pixels.map(Float.init), maskWidth: mask.width, maskHeight: mask.height,
                                     x0: 0, y0: 0, x1: imageWidth - 1, y1: imageHeight - 1, color: color, opacity: maskOpacity)
            }
            boxes.append((d, color))
        }
        // Boxes and labels last, so masks never cover them.
        let scale = max(1, min(imageWidth, imageHeight) / 320)
        for (d, color) in boxes {
            let x0 = Int(d.box.xMin.rounded(.down)), y0 = Int(d.box.yMin.rounded(.down))
            let x1 = max(x0, Int(d.box.xMax.rounded(.up)) - 1), y1 = max(y0, Int(d.box.yMax.rounded(.up)) - 1)
            canvas.drawLabeledBox(x0: x0, y0: y0, x1: x1, y1: y1, label: d.label, color: color, lineWidth: 2 * scale, scale: scale)
        }
        return canvas
    }

    /// Writes each decoded full-image mask as an 8-bit grayscale PNG (0 outside, 255 inside)
    /// named `<prefix>-<index>-<label>.png` in `directory`; returns the paths written.
    @discardableResult
    public func writeMaskPNGs(directory: String, prefix: String = "mask") throws -> [String] {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw PaliGemmaError.io(path: directory, reason: "cannot create directory: \(error.localizedDescription)")
        }
        var paths: [String] = []
        for (i, s) in segments.enumerated() {
            guard let mask = s.mask else { continue }
            let safe = String(s.label.map { $0.isLetter || $0.isNumber ? $0 : "_" }.prefix(40))
            let name = prefix + "-" + (i < 10 ? "0\(i)" : "\(i)") + (safe.isEmpty ? "" : "-" + safe) + ".png"
            let url = URL(fileURLWithPath: directory).appendingPathComponent(name)
            do {
                try PNGWriter.write(pixels: mask.grayPixels, width: mask.width, height: mask.height, layout: .gray, to: url)
            } catch {
                throw PaliGemmaError.io(path: url.path, reason: "cannot write mask PNG: \(error)")
            }
            paths.append(url.path)
        }
        return paths
    }

    /// Writes `overlay(on:)` as a PNG.
    public func writeOverlayPNG(to path: String, on image: RGBImage? = nil) throws {
        let picture = try overlay(on: image)
        do {
            try PNGWriter.write(picture, to: URL(fileURLWithPath: path))
        } catch {
            throw PaliGemmaError.io(path: path, reason: "cannot write overlay PNG: \(error)")
        }
    }
}
