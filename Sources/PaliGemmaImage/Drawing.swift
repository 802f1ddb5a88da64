// Drawing helpers for task outputs (detection boxes, segmentation masks, labels). All
// coordinates are clipped to the image, so any input is safe.

/// An 8-bit RGB colour.
public struct RGBColor: Sendable, Equatable, Hashable {
    public var r: UInt8, g: UInt8, b: UInt8

    public init(_ r: UInt8, _ g: UInt8, _ b: UInt8) {
        self.r = r
        self.g = g
        self.b = b
    }

    public static let black = RGBColor(0, 0, 0)
    public static let white = RGBColor(255, 255, 255)

    /// Distinct colours for successive objects.
    public static let palette: [RGBColor] = [
        RGBColor(230, 25, 75), RGBColor(60, 180, 75), RGBColor(0, 130, 200), RGBColor(245, 130, 48),
        RGBColor(145, 30, 180), RGBColor(70, 240, 240), RGBColor(240, 50, 230), RGBColor(210, 245, 60),
        RGBColor(250, 190, 212), RGBColor(0, 128, 128), RGBColor(170, 110, 40), RGBColor(128, 0, 0),
    ]
}

extension RGBImage {
    /// Blends `color` into pixel (x, y) with weight `alpha` (0...1); ignores points outside.
    @inline(__always)
    mutating func blend(x: Int, y: Int, color: RGBColor, alpha: Double) {
        guard x >= 0, y >= 0, x < width, y < height, alpha > 0 else { return }
        let a = min(alpha, 1.0)
        let i = (y * width + x) * 3
        func mix(_ old: UInt8, _ new: UInt8) -> UInt8 {
            UInt8((Double(old) * (1 - a) + Double(new) * a).rounded())
        }
        pixels[i] = mix(pixels[i], color.r)
        pixels[i + 1] = mix(pixels[i + 1], color.g)
        pixels[i + 2] = mix(pixels[i + 2], color.b)
    }

    /// Fills the rectangle with corners (x0, y0) and (x1, y1), both inclusive, blending
    /// with `opacity` (1 paints solid).
    public mutating func fillRectangle(x0: Int, y0: Int, x1: Int, y1: Int, color: RGBColor, opacity: Double = 1) {
        let left = max(0, min(x0, x1)), right = min(width - 1, max(x0, x1))
        let top = max(0, min(y0, y1)), bottom = min(height - 1, max(y0, y1))
        guard left <= right, top <= bottom else { return }
        for y in top...bottom {
            for x in left...right { blend(x: x, y: y, color: color, alpha: opacity) }
        }
    }

    /// Draws the outline of a rectangle (corners inclusive), `lineWidth` pixels thick,
    /// growing inwards.
    public mutating func drawRectangle(x0: Int, y0: Int, x1: Int, y1: Int, color: RGBColor, lineWidth: Int = 2) {
        let left = min(x0, x1), right = max(x0, x1), top = min(y0, y1), bottom = max(y0, y1)
        let t = max(1, lineWidth) - 1
        fillRectangle(x0: left, y0: top, x1: right, y1: min(bottom, top + t), color: color)
        fillRectangle(x0: left, y0: max(top, bottom - t), x1: right, y1: bottom, color: color)
        fillRectangle(x0: left, y0: top, x1: min(right, left + t), y1: bottom, color: color)
        fillRectangle(x0: max(left, right - t), y0: top, x1: right, y1: bottom, color: color)
    }

    /// Blends a soft mask (values 0...1, row-major `maskWidth * maskHeight`) over the
    /// rectangle (x0, y0)-(x1, y1) inclusive, stretching it with nearest-neighbour
    /// sampling: each pixel gets `color` at `opacity * mask value`. Throws when the mask
    /// size does not match.
    public mutating func blendMask(_ mask: [Float], maskWidth: Int, maskHeight: Int,
                                   x0: Int, y0: Int, x1: Int, y1: Int, color: RGBColor, opacity: Double = 0.5) throws {
        guard maskWidth > 0, maskHeight > 0, mask.count == maskWidth * maskHeight else {
            throw ImageError.invalidArgument("mask of \(maskWidth)x\(maskHeight) needs that many values, got \(mask.count)")
        }
        let left = min(x0, x1), right = max(x0, x1), top = min(y0, y1), bottom = max(y0, y1)
        let boxW = right - left + 1, boxH = bottom - top + 1
        let clipLeft = max(0, left), clipRight = min(width - 1, right)
        let clipTop = max(0, top), clipBottom = min(height - 1, bottom)
        guard clipLeft <= clipRight, clipTop <= clipBottom else { return }
        for y in clipTop...clipBottom {
            let my = min(maskHeight - 1, (y - top) * maskHeight / boxH)
            for x in clipLeft...clipRight {
                let mx = min(maskWidth - 1, (x - left) * maskWidth / boxW)
                let value = Double(mask[my * maskWidth + mx])
                if value.isFinite { blend(x: x, y: y, color: color, alpha: opacity * min(max(value, 0), 1)) }
            }
        }
    }

    /// Draws `text` with the built-in 5x7 font, top-left at (x, y), each font pixel
    /// `scale` image pixels; with `background`, a solid box is painted behind it first.
    public mutating func drawText(_ text: String, x: Int, y: Int, color: RGBColor,
                                  background: RGBColor? = nil, scale: Int = 2) {
        let s = max(1, scale)
        if let background {
            let size = BitmapFont.size(of: text, scale: s)
            fillRectangle(x0: x, y0: y, x1: x + size.width - 1, y1: y + size.height - 1, color: background)
        }
        var penX = x + s  // one font pixel of padding
        for character in text {
            let rows = BitmapFont.glyph(for: character)
            for (row, bits) in rows.enumerated() {
                for column in 0..<BitmapFont.glyphWidth where bits & (0x10 >> UInt8(column)) != 0 {
                    fillRectangle(x0: penX + column * s, y0: y + (row + 1) * s,
                                  x1: penX + (column + 1) * s - 1, y1: y + (row + 2) * s - 1, color: color)
                }
            }
            penX += BitmapFont.advance * s
        }
    }

    /// A labelled detection box: outline plus the label on a filled tab above it (or
    /// inside when there is no room above).
    public mutating func drawLabeledBox(x0: Int, y0: Int, x1: Int, y1: Int, label: String,
                                        color: RGBColor, lineWidth: Int = 2, scale: Int = 2) {
        drawRectangle(x0: x0, y0: y0, x1: x1, y1: y1, color: color, lineWidth: lineWidth)
        let size = BitmapFont.size(of: label, scale: scale)
        let top = min(y0, y1)
        let labelY = top - size.height >= 0 ? top - size.height : top
        let luminance = 299 * Int(color.r) + 587 * Int(color.g) + 114 * Int(color.b)
        drawText(label, x: min(x0, x1), y: labelY, color: luminance > 128_000 ? .black : .white,
                 background: color, scale: scale)
    }
}
