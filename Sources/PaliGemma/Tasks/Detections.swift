import Foundation

// Parsing PaliGemma's detection and segmentation answers.
//
// Detection:    <loc y_min><loc x_min><loc y_max><loc x_max> label ; <loc..>x4 label ; ...
// Segmentation: <loc..>x4 <seg..>x16 label ; ...
//
// <locNNNN> (0000...1023, ids 256000...257023) are coordinates on a 1024-bin grid over the
// resized square input; big_vision encodes round(v * 1023) and decodes v = code / 1023 (the
// Hugging Face demo divides by 1024 instead; we follow big_vision). The square is a
// non-uniform resize of the original image, so each axis maps back by its own size:
// x_px = x * width, y_px = y * height. <segNNN> (000...127, ids 257024...257151) are the
// mask decoder's codebook indices.

/// One object as the model wrote it: 4 location codes, optional 16 seg codes, a label.
public struct ParsedObject: Sendable, Equatable {
    /// Location codes in the model's order: y_min, x_min, y_max, x_max (each 0...1023).
    public let locs: [Int]
    /// The 16 mask codes (each 0...127), or nil for a detection-only answer.
    public let segCodes: [Int]?
    /// The label, trimmed of surrounding whitespace (may be empty).
    public let label: String
    /// The source text of this object.
    public let text: String

    public init(locs: [Int], segCodes: [Int]?, label: String, text: String) {
        self.locs = locs
        self.segCodes = segCodes
        self.label = label
        self.text = text
    }

    /// The box normalised to [0, 1] (code / 1023, big_vision's convention).
    public var normalizedBox: NormalizedBox {
        NormalizedBox(xMin: Double(locs[1]) / 1023, yMin: Double(locs[0]) / 1023,
                      xMax: Double(locs[3]) / 1023, yMax: Double(locs[2]) / 1023)
    }
}

/// A box with coordinates in [0, 1] of the image's width and height.
public struct NormalizedBox: Sendable, Equatable {
    public let xMin, yMin, xMax, yMax: Double

    /// In pixels of an image of the given size (x by width, y by height), unrounded.
    public func pixels(width: Int, height: Int) -> PixelBox {
        PixelBox(xMin: xMin * Double(width), yMin: yMin * Double(height),
                 xMax: xMax * Double(width), yMax: yMax * Double(height))
    }
}

/// A box in pixel coordinates of the original image (unrounded).
public struct PixelBox: Sendable, Equatable {
    public let xMin, yMin, xMax, yMax: Double
}

/// Part of the text that did not yield a (complete) object, and why. JSON: {"text", "reason"}.
public struct SkippedPiece: Sendable, Equatable, Encodable {
    public let text: String
    public let reason: String

    public init(text: String, reason: String) {
        self.text = text
        self.reason = reason
    }
}

/// Splits generated text into objects. Never fails: anything malformed is reported in
/// `skipped` with a reason, and no box is invented.
public enum DetectionParser {
    public static let locCount = 1024
    public static let segCount = 128

    /// The result of parsing: objects with a valid box (in text order), and what was skipped.
    /// An object whose box is valid but whose seg tokens are not (wrong count, bad code) is
    /// kept without a mask (`segCodes` nil) and the mask problem is also listed in `skipped`.
    public static func parse(_ text: String) -> (objects: [ParsedObject], skipped: [SkippedPiece]) {
        var objects: [ParsedObject] = []
        var skipped: [SkippedPiece] = []
        for piece in pieces(of: text) {
            switch validate(piece) {
            case let .object(object, maskProblem):
                objects.append(object)
                if let maskProblem { skipped.append(SkippedPiece(text: object.text, reason: maskProblem)) }
            case let .skip(reason):
                skipped.append(SkippedPiece(text: piece.text, reason: reason))
            case .ignore:
                break
            }
        }
        return (objects, skipped)
    }

    // MARK: scanning

    enum Token: Equatable {
        case loc(Int)
        case seg(Int)
        case badLoc(String)  // <loc...> with wrong digits or out of range
        case badSeg(String)
    }

    /// One object's worth of text: its leading tokens and the label after them.
    struct Piece {
        var tokens: [Token] = []
        var label = ""
        var text = ""
        /// Whether a label has started (a token after it then starts a new object).
        var hasText: Bool { !label.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty }
    }

    /// Control tokens that may be left in decoded text and carry no meaning here.
    static let ignoredTags: Set<String> = ["<eos>", "<bos>", "<pad>"]

    /// Splits the text at ";" and also where a new run of <loc>/<seg> tokens begins after a
    /// label (big_vision's parser accepts objects without the " ; " separator too).
    static func pieces(of text: String) -> [Piece] {
        var pieces: [Piece] = []
        var current = Piece()
        func finish() {
            if !current.text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { pieces.append(current) }
            current = Piece()
        }
        var i = text.startIndex
        while i < text.endIndex {
            let c = text[i]
            if c == ";" {
                finish()
                i = text.index(after: i)
                continue
            }
            if c == "<", let close = text[i...].firstIndex(of: ">") {
                let tag = String(text[i...close])
                if ignoredTags.contains(tag) {
                    i = text.index(after: close)
                    continue
                }
                if let token = token(tag) {
                    if current.hasText { finish() }
                    current.tokens.append(token)
                    current.text += tag
                    i = text.index(after: close)
                    continue
                }
            }
            current.label.append(c)
            current.text.append(c)
            i = text.index(after: i)
        }
        finish()
        return pieces
    }

    /// Parses "<locNNNN>" / "<segNNN>" (also with the wrong number of digits or out of range,
    /// reported as bad); nil for any other tag.
    static func token(_ tag: String) -> Token? {
        let inner = tag.dropFirst().dropLast()
        for (prefix, digits, limit) in [("loc", 4, locCount), ("seg", 3, segCount)] where inner.hasPrefix(prefix) {
            let number = inner.dropFirst(3)
            guard !number.isEmpty, number.allSatisfy({ $0.isASCII && $0.isNumber }) else { return nil }
            guard number.count == digits, let value = Int(number), value < limit else {
                return prefix == "loc" ? .badLoc(tag) : .badSeg(tag)
            }
            return prefix == "loc" ? .loc(value) : .seg(value)
        }
        return nil
    }

    // MARK: validation

    enum Outcome {
        case object(ParsedObject, maskProblem: String?)
        case skip(String)
        case ignore
    }

    static func validate(_ piece: Piece) -> Outcome {
        let text = piece.text.trimmingCharacters(in: .whitespacesAndNewlines)
        let label = piece.label.trimmingCharacters(in: .whitespacesAndNewlines)
        if piece.tokens.isEmpty {
            return text.isEmpty ? .ignore : .skip("text without location tokens")
        }
        var locs: [Int] = [], segs: [Int] = []
        var badSegs: [String] = []
        for token in piece.tokens {
            switch token {
            case let .loc(v):
                guard segs.isEmpty, badSegs.isEmpty else { return .skip("<loc> token after <seg> tokens") }
                locs.append(v)
            case let .badLoc(tag):
                return .skip("location token \(tag) is not one of <loc0000>...<loc1023>")
            case let .seg(v): segs.append(v)
            case let .badSeg(tag): badSegs.append(tag)
            }
        }
        guard locs.count == 4 else {
            return .skip(locs.count < 4 ? "only \(locs.count) of 4 location tokens"
                                        : "\(locs.count) location tokens, expected 4")
        }
        let (yMin, xMin, yMax, xMax) = (locs[0], locs[1], locs[2], locs[3])
        guard yMax > yMin, xMax > xMin else {
            return .skip("empty or inverted box (y \(yMin)...\(yMax), x \(xMin)...\(xMax); needs y_max > y_min and x_max > x_min)")
        }
        var maskProblem: String?
        if let bad = badSegs.first {
            maskProblem = "mask skipped: segment token \(bad) is not one of <seg000>...<seg127>"
        } else if !segs.isEmpty && segs.count != 16 {
            maskProblem = "mask skipped: \(segs.count) of 16 segment tokens"
        }
        let codes = maskProblem == nil && segs.count == 16 ? segs : nil
        return .object(ParsedObject(locs: locs, segCodes: codes, label: label, text: text), maskProblem: maskProblem)
    }
}
