import Foundation
import PaliGemmaImage
import PaliGemmaJSON

// The synthetic "shapes" world (issue 14): seeded scenes of 1-4 filled circles, squares and
// triangles on a plain background, their rendering, and the prompts and answers PaliGemma's own
// task forms give them. `ShapesDataset` writes them as a fine-tuning folder (`paligemma shapes`).
//
// The world, at a canvas of `size` × `size` pixels (224 in training):
// - background: each channel uniform in 190...255;
// - 1 to 4 objects, each a circle, an axis-aligned square or an upright isosceles triangle (base
//   at the bottom, as wide as tall), in red (220,40,40), green (40,170,60), blue (40,90,220) or
//   yellow (235,200,40), each channel jittered uniformly by -15...15;
// - a square bounding box of side 28...64 px at 224 (round(28·size/224)...round(64·size/224)),
//   inside the canvas, at least max(4, round(4·size/224)) px from every other box (apart along x
//   or along y);
// - edges anti-aliased (4×4 coverage supersampling) or not, chosen per scene.
// Objects are listed left to right by box centre (a tie: the upper first).

/// A shape of the world.
public enum ShapeKind: String, CaseIterable, Sendable, Codable {
    case circle, square, triangle

    /// "circles", "squares", "triangles".
    public var plural: String { rawValue + "s" }
}

/// A colour name of the world and its base colour (before jitter).
public enum ShapeColorName: String, CaseIterable, Sendable, Codable {
    case red, green, blue, yellow

    public var base: RGBColor {
        switch self {
        case .red: return RGBColor(220, 40, 40)
        case .green: return RGBColor(40, 170, 60)
        case .blue: return RGBColor(40, 90, 220)
        case .yellow: return RGBColor(235, 200, 40)
        }
    }
}

/// One object: its shape, colour (name and jittered value) and bounding box. The box is the
/// square of pixels x..<x+side, y..<y+side, i.e. [x, x+side] × [y, y+side] in continuous coordinates.
public struct ShapeObject: Sendable, Equatable {
    public var kind: ShapeKind
    public var colorName: ShapeColorName
    public var color: RGBColor
    public var x: Int
    public var y: Int
    public var side: Int

    public init(kind: ShapeKind, colorName: ShapeColorName, color: RGBColor? = nil, x: Int, y: Int, side: Int) {
        self.kind = kind
        self.colorName = colorName
        self.color = color ?? colorName.base
        self.x = x
        self.y = y
        self.side = side
    }

    /// The box centre in continuous coordinates.
    public var centerX: Double { Double(x) + Double(side) / 2 }
    public var centerY: Double { Double(y) + Double(side) / 2 }

    /// "a red circle".
    public var phrase: String { "a \(colorName.rawValue) \(kind.rawValue)" }

    /// Whether the point (continuous coordinates) lies inside the filled shape.
    func contains(_ px: Double, _ py: Double) -> Bool {
        let s = Double(side), x0 = Double(x), y0 = Double(y)
        guard px >= x0, px <= x0 + s, py >= y0, py <= y0 + s else { return false }
        switch kind {
        case .square:
            return true
        case .circle:
            let dx = px - centerX, dy = py - centerY, r = s / 2
            return dx * dx + dy * dy <= r * r
        case .triangle:
            // Apex at (centre, top), base the bottom edge: the half-width grows from 0 to s/2.
            return abs(px - centerX) <= (py - y0) / 2
        }
    }

    /// The gap between two boxes: the larger of the horizontal and vertical gaps (negative
    /// when they overlap). Boxes are "at least g px apart" when this is at least g.
    public func gap(to other: ShapeObject) -> Int {
        let gx = max(other.x - (x + side), x - (other.x + other.side))
        let gy = max(other.y - (y + side), y - (other.y + other.side))
        return max(gx, gy)
    }
}

/// The world's constants at a canvas size.
public enum ShapesWorld {
    /// Canvas sizes `paligemma shapes` accepts.
    public static let sizes = 64...2048
    public static let backgroundRange = 190...255
    public static let jitter = 15
    public static let objectCounts = 1...4

    /// Box sides at this canvas size: 28...64 px at 224, scaled.
    public static func sides(size: Int) -> ClosedRange<Int> {
        let low = Int((28 * Double(size) / 224).rounded()), high = Int((64 * Double(size) / 224).rounded())
        return max(1, low)...max(1, high)
    }

    /// The least gap between boxes: 4 px, scaled up with larger canvases.
    public static func gap(size: Int) -> Int { max(4, Int((4 * Double(size) / 224).rounded())) }

    /// `round(v / size · 1023)` (ties to even, as Python's and NumPy's round), PaliGemma's
    /// location code for coordinate `v` of a `size`-pixel side.
    public static func locationCode(_ v: Int, size: Int) -> Int {
        let code = (Double(v) / Double(size) * 1023).rounded(.toNearestOrEven)
        return min(1023, max(0, Int(code)))
    }
}

/// How edges are drawn.
public enum ShapesAntialias: String, CaseIterable, Sendable {
    /// Chosen per scene by the seed (half of the scenes each way).
    case random
    /// Always 4×4 coverage supersampling.
    case on
    /// Never: a pixel takes the object's colour when its centre is inside.
    case off
}

/// The question sets `paligemma shapes --tasks` names.
public enum ShapesTask: String, CaseIterable, Sendable {
    case caption, count, color, detect

    /// The set a prompt of the world belongs to (`caption en`, `answer en how many …`,
    /// `answer en what color …`, `detect …`); nil for any other prompt.
    public init?(prefix: String) {
        if prefix == "caption en" { self = .caption }
        else if prefix.hasPrefix("answer en how many ") { self = .count }
        else if prefix.hasPrefix("answer en what color ") { self = .color }
        else if prefix.hasPrefix("detect ") { self = .detect }
        else { return nil }
    }

    /// The groups `paligemma eval --group-by shapes` counts a line in: its set ("other" for a
    /// prompt outside the world) and, for a caption, also "caption, N objects" (N read from the
    /// reference caption), since the left-to-right order gets harder with every object.
    public static func evaluationGroups(prefix: String, suffix: String) -> [String] {
        guard let task = ShapesTask(prefix: prefix) else { return ["other"] }
        guard task == .caption else { return [task.rawValue] }
        let objects = suffix.isEmpty ? 0 : suffix.components(separatedBy: ", ")
            .reduce(0) { $0 + $1.components(separatedBy: " and ").count }
        return [task.rawValue, "caption, \(objects) object" + (objects == 1 ? "" : "s")]
    }

    /// Where a group of `evaluationGroups` is listed: the sets in `allCases` order, each
    /// caption group by its number of objects right after "caption", anything else last.
    public static func evaluationGroupRank(_ name: String) -> Int {
        if let task = ShapesTask(rawValue: name), let index = allCases.firstIndex(of: task) { return 100 * index }
        let captionPrefix = "caption, "
        if name.hasPrefix(captionPrefix), let n = Int(name.dropFirst(captionPrefix.count).prefix { $0.isNumber }) {
            return 1 + min(n, 98)
        }
        return 100 * allCases.count
    }
}

/// One prompt and its answer (a fine-tuning line's prefix and suffix).
public struct ShapesQuestion: Sendable, Equatable {
    public var prefix: String
    public var suffix: String

    public init(prefix: String, suffix: String) {
        self.prefix = prefix
        self.suffix = suffix
    }
}

/// A scene: canvas size, background, objects (kept left to right) and edge style.
public struct ShapesScene: Sendable, Equatable {
    public let size: Int
    public let background: RGBColor
    /// The objects left to right by box centre (ties: the upper first).
    public let objects: [ShapeObject]
    public let antialiased: Bool

    /// Orders `objects` left to right; does not check them against the world's rules.
    public init(size: Int, background: RGBColor, objects: [ShapeObject], antialiased: Bool = false) {
        self.size = size
        self.background = background
        // Compare 2·centre (integers) so that ties are exact.
        self.objects = objects.sorted {
            let a = 2 * $0.x + $0.side, b = 2 * $1.x + $1.side
            return a != b ? a < b : 2 * $0.y + $0.side < 2 * $1.y + $1.side
        }
        self.antialiased = antialiased
    }

    // MARK: sampling

    /// A scene drawn to the world's rules from `rng`.
    /// `objectCounts` must lie within `ShapesWorld.objectCounts` (the generator checks it).
    static func sample(size: Int, antialias: ShapesAntialias, objectCounts: ClosedRange<Int>, rng: inout Xoshiro256) -> ShapesScene {
        func uniform(_ range: ClosedRange<Int>) -> Int {
            range.lowerBound + min(range.count - 1, Int(rng.nextDouble() * Double(range.count)))
        }
        let background = RGBColor(UInt8(uniform(ShapesWorld.backgroundRange)), UInt8(uniform(ShapesWorld.backgroundRange)),
                                  UInt8(uniform(ShapesWorld.backgroundRange)))
        let antialiased: Bool
        switch antialias {
        case .random: antialiased = uniform(0...1) == 1
        case .on: antialiased = true
        case .off: antialiased = false
        }
        let count = uniform(objectCounts)
        let sides = ShapesWorld.sides(size: size), gap = ShapesWorld.gap(size: size)
        // Rejection sampling: a placement that fails 200 times starts the layout again (at the
        // sizes accepted, four of the largest boxes fit easily, so this ends quickly).
        while true {
            var objects: [ShapeObject] = []
            placing: for _ in 0..<count {
                let kind = ShapeKind.allCases[uniform(0...2)]
                let name = ShapeColorName.allCases[uniform(0...3)]
                func jittered(_ c: UInt8) -> UInt8 {
                    UInt8(min(255, max(0, Int(c) + uniform(-ShapesWorld.jitter...ShapesWorld.jitter))))
                }
                let base = name.base
                let color = RGBColor(jittered(base.r), jittered(base.g), jittered(base.b))
                let side = uniform(sides)
                for _ in 0..<200 {
                    let candidate = ShapeObject(kind: kind, colorName: name, color: color,
                                                x: uniform(0...(size - side)), y: uniform(0...(size - side)), side: side)
                    if objects.allSatisfy({ $0.gap(to: candidate) >= gap }) {
                        objects.append(candidate)
                        continue placing
                    }
                }
                break placing
            }
            if objects.count == count {
                return ShapesScene(size: size, background: background, objects: objects, antialiased: antialiased)
            }
        }
    }

    // MARK: rendering

    /// The scene's pixels. Only pixels inside an object's box differ from the background.
    public func render() -> RGBImage {
        var image = RGBImage(width: size, height: size, fill: (background.r, background.g, background.b))
        let samples = antialiased ? 4 : 1
        for object in objects {
            let c = object.color
            for py in max(0, object.y)..<min(size, object.y + object.side) {
                for px in max(0, object.x)..<min(size, object.x + object.side) {
                    var hits = 0
                    for sy in 0..<samples {
                        for sx in 0..<samples {
                            let fx = Double(px) + (Double(sx) + 0.5) / Double(samples)
                            let fy = Double(py) + (Double(sy) + 0.5) / Double(samples)
                            if object.contains(fx, fy) { hits += 1 }
                        }
                    }
                    guard hits > 0 else { continue }
                    let a = Double(hits) / Double(samples * samples)
                    func mix(_ old: UInt8, _ new: UInt8) -> UInt8 { UInt8((Double(old) * (1 - a) + Double(new) * a).rounded()) }
                    let i = (py * size + px) * 3
                    image.pixels[i] = mix(background.r, c.r)
                    image.pixels[i + 1] = mix(background.g, c.g)
                    image.pixels[i + 2] = mix(background.b, c.b)
                }
            }
        }
        return image
    }

    // MARK: answers

    /// Objects of one shape.
    public func count(of kind: ShapeKind) -> Int { objects.filter { $0.kind == kind }.count }

    /// "a red circle", "a and b", "a, b and c", "a, b, c and d".
    public var caption: String {
        let phrases = objects.map(\.phrase)
        guard let last = phrases.last else { return "" }
        if phrases.count == 1 { return last }
        return phrases.dropLast().joined(separator: ", ") + " and " + last
    }

    /// The colour of the one object of that shape, or nil when there is not exactly one.
    public func colorName(of kind: ShapeKind) -> ShapeColorName? {
        let matching = objects.filter { $0.kind == kind }
        return matching.count == 1 ? matching[0].colorName : nil
    }

    /// `<locY1><locX1><locY2><locX2> circle` for each object of the labels' shapes, left to
    /// right, joined by " ; "; empty when there is none.
    public func detection(_ labels: [ShapeKind]) -> String {
        objects.filter { labels.contains($0.kind) }.map { o in
            let codes = [o.y, o.x, o.y + o.side, o.x + o.side].map { ShapesWorld.locationCode($0, size: size) }
            return codes.map { "<loc" + String(repeating: "0", count: 4 - String($0).count) + String($0) + ">" }.joined()
                + " " + o.kind.rawValue
        }.joined(separator: " ; ")
    }

    /// The questions of `tasks`, in this order:
    /// - caption: `caption en` (1 line);
    /// - count: `answer en how many shapes are there?`, then circles, squares, triangles (4 lines);
    /// - color: `answer en what color is the circle?` (square, triangle) for each shape present
    ///   exactly once (0-3 lines);
    /// - detect: `detect circle`, `detect square`, `detect triangle` (empty answer when absent),
    ///   then one two-label prompt such as `detect triangle ; circle`, its pair and order drawn
    ///   from `rng` (4 lines).
    func questions(_ tasks: [ShapesTask], rng: inout Xoshiro256) -> [ShapesQuestion] {
        taggedQuestions(tasks, rng: &rng).map(\.question)
    }

    /// `questions(_:rng:)` with the task each question belongs to.
    func taggedQuestions(_ tasks: [ShapesTask], rng: inout Xoshiro256) -> [(task: ShapesTask, question: ShapesQuestion)] {
        var out: [(task: ShapesTask, question: ShapesQuestion)] = []
        func append(_ task: ShapesTask, _ question: ShapesQuestion) { out.append((task, question)) }
        for task in ShapesTask.allCases where tasks.contains(task) {
            switch task {
            case .caption:
                append(task, ShapesQuestion(prefix: "caption en", suffix: caption))
            case .count:
                append(task, ShapesQuestion(prefix: "answer en how many shapes are there?", suffix: String(objects.count)))
                for kind in ShapeKind.allCases {
                    append(task, ShapesQuestion(prefix: "answer en how many \(kind.plural) are there?", suffix: String(count(of: kind))))
                }
            case .color:
                for kind in ShapeKind.allCases {
                    if let name = colorName(of: kind) {
                        append(task, ShapesQuestion(prefix: "answer en what color is the \(kind.rawValue)?", suffix: name.rawValue))
                    }
                }
            case .detect:
                for kind in ShapeKind.allCases {
                    append(task, ShapesQuestion(prefix: "detect \(kind.rawValue)", suffix: detection([kind])))
                }
                var kinds = ShapeKind.allCases
                kinds.remove(at: min(2, Int(rng.nextDouble() * 3)))
                if rng.nextDouble() < 0.5 { kinds.reverse() }
                append(task, ShapesQuestion(prefix: "detect " + kinds.map(\.rawValue).joined(separator: " ; "),
                                            suffix: detection(kinds)))
            }
        }
        return out
    }
}

/// Scenes and questions from a seed: example `i` depends only on (seed, i, size, antialias), so a
/// smaller `count` gives a prefix of a larger one.
public struct ShapesGenerator: Sendable {
    public let size: Int
    public let seed: UInt64
    public let tasks: [ShapesTask]
    public let antialias: ShapesAntialias
    /// Questions kept per image, drawn at random from its full list (in list order); nil: all.
    /// The scenes do not depend on it, so fewer questions over more images is the same world.
    public let questionsPerImage: Int?
    /// Tasks whose questions are always among an image's kept ones when `questionsPerImage` is
    /// set (for example `[.caption]`: each image's caption, plus questionsPerImage - 1 drawn
    /// from the rest); they are kept even beyond questionsPerImage. Empty: a plain draw.
    public let alwaysKept: [ShapesTask]
    /// How many objects a scene holds, drawn uniformly from this range (a part of
    /// `ShapesWorld.objectCounts`, all of it by default: then the scenes are those drawn before
    /// the range existed). A narrower range concentrates a training set on, say, the 3- and
    /// 4-object scenes whose captions are hardest; each scene is still one of the world's.
    public let objectCounts: ClosedRange<Int>

    /// Throws `PaliGemmaError.input` for a size outside `ShapesWorld.sizes`, no task, fewer
    /// than 1 question per image, an always-kept task that is not among `tasks`, or object counts
    /// outside `ShapesWorld.objectCounts`.
    public init(size: Int = 224, seed: UInt64, tasks: [ShapesTask] = ShapesTask.allCases, antialias: ShapesAntialias = .random,
                questionsPerImage: Int? = nil, alwaysKept: [ShapesTask] = [],
                objectCounts: ClosedRange<Int> = ShapesWorld.objectCounts) throws {
        guard ShapesWorld.sizes.contains(size) else {
            throw PaliGemmaError.input("shapes: --size must be in \(ShapesWorld.sizes.lowerBound)...\(ShapesWorld.sizes.upperBound), got \(size)")
        }
        guard !tasks.isEmpty else { throw PaliGemmaError.input("shapes: no task given") }
        if let k = questionsPerImage, k < 1 { throw PaliGemmaError.input("shapes: --questions must be at least 1, got \(k)") }
        if let missing = alwaysKept.first(where: { !tasks.contains($0) }) {
            throw PaliGemmaError.input("shapes: --always names '\(missing.rawValue)', which is not among --tasks")
        }
        let world = ShapesWorld.objectCounts
        guard world.contains(objectCounts.lowerBound), world.contains(objectCounts.upperBound) else {
            throw PaliGemmaError.input("shapes: --objects must lie within \(world.lowerBound)-\(world.upperBound), got \(objectCounts.lowerBound)-\(objectCounts.upperBound)")
        }
        self.size = size
        self.seed = seed
        self.tasks = tasks
        self.antialias = antialias
        self.questionsPerImage = questionsPerImage
        self.alwaysKept = alwaysKept
        self.objectCounts = objectCounts
    }

    /// Example `index`: its scene and questions (`questionsPerImage` of them, when set).
    public func example(_ index: Int) -> (scene: ShapesScene, questions: [ShapesQuestion]) {
        var rng = Xoshiro256(seed: seed ^ (UInt64(truncatingIfNeeded: index) &* 0xD1B5_4A32_D192_ED03 &+ 0x8CB9_2BA7_2F3D_8DD7))
        let scene = ShapesScene.sample(size: size, antialias: antialias, objectCounts: objectCounts, rng: &rng)
        let tagged = scene.taggedQuestions(tasks, rng: &rng)
        let all = tagged.map(\.question)
        guard let k = questionsPerImage, k < all.count else { return (scene, all) }
        // The always-kept questions, then a seeded partial Fisher-Yates draw from the others
        // (all of them when nothing is always kept); the kept ones in list order.
        let kept = tagged.indices.filter { alwaysKept.contains(tagged[$0].task) }
        var positions = tagged.indices.filter { !alwaysKept.contains(tagged[$0].task) }
        let draw = min(max(0, k - kept.count), positions.count)
        for i in 0..<draw { positions.swapAt(i, i + Int(rng.next() % UInt64(positions.count - i))) }
        return (scene, (kept + positions[..<draw]).sorted().map { all[$0] })
    }

    /// Parses "3-4" (a range) or "3" (one count) for `objectCounts`; the generator checks the bounds.
    public static func objectCounts(_ text: String) throws -> ClosedRange<Int> {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        switch parts.count {
        case 1: if let n = parts[0] { return n...n }
        case 2: if let low = parts[0], let high = parts[1], low <= high { return low...high }
        default: break
        }
        throw PaliGemmaError.input("shapes: --objects must be a count or a range such as 3-4, got '\(text)'")
    }

    /// Parses "caption,count,color,detect" (any subset, any order).
    public static func tasks(_ list: String) throws -> [ShapesTask] {
        var tasks: [ShapesTask] = []
        for name in list.split(separator: ",", omittingEmptySubsequences: false).map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let task = ShapesTask(rawValue: name) else {
                throw PaliGemmaError.input("shapes: unknown task '\(name)' (known: \(ShapesTask.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            if !tasks.contains(task) { tasks.append(task) }
        }
        return tasks
    }
}

/// Writing a generated data set: `00000.png`, ... and `data.jsonl` (big_vision's fine-tuning
/// lines, `{"image": "00000.png", "prefix": "caption en", "suffix": "a red circle"}`).
public enum ShapesDataset {
    /// Writes `count` images and their questions to `folder`, which must not exist or be empty.
    /// Returns the number of JSONL lines. Throws `PaliGemmaError.input` for a count below 1,
    /// `PaliGemmaError.io` for a folder that is a file or not empty, or a write that fails.
    @discardableResult
    public static func write(_ generator: ShapesGenerator, count: Int, to folder: URL,
                             progress: ((Int) -> Void)? = nil) throws -> Int {
        guard count >= 1 else { throw PaliGemmaError.input("shapes: --count must be at least 1, got \(count)") }
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: folder.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw PaliGemmaError.io(path: folder.path, reason: "exists and is not a folder") }
            let contents = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? ["?"]
            guard contents.isEmpty else { throw PaliGemmaError.io(path: folder.path, reason: "exists and is not empty") }
        } else {
            do { try fm.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
                throw PaliGemmaError.io(path: folder.path, reason: "cannot create: \(error.localizedDescription)")
            }
        }
        /// One line of data.jsonl: the fine-tuning format's three keys.
        struct Line: Encodable { let image: String, prefix: String, suffix: String }
        let digits = max(5, String(count - 1).count)
        // Image `index`: rendered, written, and its lines of data.jsonl.
        @Sendable func example(_ index: Int) throws -> (jsonl: String, lines: Int) {
            let (scene, questions) = generator.example(index)
            let number = String(index)
            let name = String(repeating: "0", count: digits - number.count) + number + ".png"
            let url = folder.appendingPathComponent(name)
            do { try PNGWriter.write(scene.render(), to: url) } catch {
                throw PaliGemmaError.io(path: url.path, reason: "cannot write: \(error)")
            }
            var jsonl = ""
            for q in questions { jsonl += try JSONOutput.string(Line(image: name, prefix: q.prefix, suffix: q.suffix)) + "\n" }
            return (jsonl, questions.count)
        }
        // Blocks of images drawn and written on every core (each image depends only on its
        // index); their lines joined in index order, so the bytes do not depend on the cores.
        var jsonl = ""
        var lines = 0
        let block = 256
        for start in stride(from: 0, to: count, by: block) {
            let n = min(block, count - start)
            let results = WorkerSlots<Result<(jsonl: String, lines: Int), Error>>(n)
            DispatchQueue.concurrentPerform(iterations: n) { k in results[k] = Result { try example(start + k) } }
            for k in 0..<n {
                guard let result = results[k] else { throw PaliGemmaError.io(path: folder.path, reason: "image \(start + k) was not written") }
                let (text, lineCount) = try result.get()
                jsonl += text
                lines += lineCount
            }
            progress?(start + n)
        }
        let url = folder.appendingPathComponent("data.jsonl")
        do { try Data(jsonl.utf8).write(to: url) } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot write: \(error.localizedDescription)")
        }
        return lines
    }
}
