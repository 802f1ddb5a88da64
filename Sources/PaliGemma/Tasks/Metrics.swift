import Foundation

// Task metrics for evaluating answers against references (`paligemma eval`): exact match and
// VQA-style normalised accuracy for text, and precision / recall / F1 at IoU 0.5 with the mean
// IoU of matched boxes for detection answers.

public enum AnswerMetrics {
    /// The VQA evaluation's answer normalisation: lower case, punctuation dropped (a period
    /// between digits kept), number words zero to ten as digits, articles a / an / the dropped,
    /// common contractions restored, whitespace collapsed.
    public static func normalize(_ text: String) -> String {
        let numbers: [String: String] = ["none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
                       "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"]
        let contractions: [String: String] = ["dont": "don't", "doesnt": "doesn't", "isnt": "isn't", "arent": "aren't", "cant": "can't",
                            "wont": "won't", "im": "i'm", "ive": "i've", "youre": "you're", "thats": "that's", "whats": "what's"]
        var chars: [Character] = []
        let lower = Array(text.lowercased())
        for (i, ch) in lower.enumerated() {
            if ch == "." && i > 0 && i + 1 < lower.count && lower[i - 1].isNumber && lower[i + 1].isNumber {
                chars.append(ch)
            } else if ch == "'" {
                continue  // contractions are restored below from their apostrophe-less form
            } else if ch.isPunctuation || ch.isSymbol {
                chars.append(" ")
            } else {
                chars.append(ch)
            }
        }
        var words: [String] = []
        for piece in String(chars).split(whereSeparator: \.isWhitespace) {
            let w = String(piece)
            if w == "a" || w == "an" || w == "the" { continue }
            words.append(numbers[w] ?? contractions[w] ?? w)
        }
        return words.joined(separator: " ")
    }

    public static func exactMatch(_ answer: String, _ reference: String) -> Bool {
        answer.trimmingCharacters(in: .whitespacesAndNewlines) == reference.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static func vqaMatch(_ answer: String, _ reference: String) -> Bool { normalize(answer) == normalize(reference) }

    /// Intersection over union of two boxes.
    public static func iou(_ a: NormalizedBox, _ b: NormalizedBox) -> Double {
        let w = min(a.xMax, b.xMax) - max(a.xMin, b.xMin), h = min(a.yMax, b.yMax) - max(a.yMin, b.yMin)
        guard w > 0, h > 0 else { return 0 }
        let inter = w * h
        let area = { (x: NormalizedBox) in max(0, x.xMax - x.xMin) * max(0, x.yMax - x.yMin) }
        let union = area(a) + area(b) - inter
        return union > 0 ? inter / union : 0
    }

    /// Box matching of one answer against its reference: each reference object is matched to
    /// at most one predicted object of the same label, greedily by highest IoU, if IoU >= 0.5.
    public struct BoxCounts: Sendable, Equatable {
        public var predicted = 0
        public var reference = 0
        public var matched = 0
        public var matchedIoUSum = 0.0

        public init() {}

        public static func + (a: BoxCounts, b: BoxCounts) -> BoxCounts {
            var c = a
            c.predicted += b.predicted
            c.reference += b.reference
            c.matched += b.matched
            c.matchedIoUSum += b.matchedIoUSum
            return c
        }

        public var precision: Double { predicted > 0 ? Double(matched) / Double(predicted) : (reference == 0 ? 1 : 0) }
        public var recall: Double { reference > 0 ? Double(matched) / Double(reference) : (predicted == 0 ? 1 : 0) }
        public var f1: Double { precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0 }
        public var meanIoU: Double { matched > 0 ? matchedIoUSum / Double(matched) : 0 }
    }

    public static func boxes(_ answer: String, _ reference: String, threshold: Double = 0.5) -> BoxCounts {
        let predicted = DetectionParser.parse(answer).objects, wanted = DetectionParser.parse(reference).objects
        var counts = BoxCounts()
        counts.predicted = predicted.count
        counts.reference = wanted.count
        var pairs: [(iou: Double, p: Int, r: Int)] = []
        for (i, p) in predicted.enumerated() {
            for (j, r) in wanted.enumerated() where p.label == r.label {
                let v = iou(p.normalizedBox, r.normalizedBox)
                if v >= threshold { pairs.append((v, i, j)) }
            }
        }
        pairs.sort { $0.iou != $1.iou ? $0.iou > $1.iou : ($0.r, $0.p) < ($1.r, $1.p) }
        var usedP = Set<Int>(), usedR = Set<Int>()
        for pair in pairs where !usedP.contains(pair.p) && !usedR.contains(pair.r) {
            usedP.insert(pair.p)
            usedR.insert(pair.r)
            counts.matched += 1
            counts.matchedIoUSum += pair.iou
        }
        return counts
    }

    /// Whether a reference answer holds boxes (so box metrics apply to it).
    public static func hasBoxes(_ reference: String) -> Bool { !DetectionParser.parse(reference).objects.isEmpty }
}
