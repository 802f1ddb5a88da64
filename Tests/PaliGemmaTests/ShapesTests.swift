import Foundation
import Testing
@testable import PaliGemma

/// The synthetic shapes world (`ShapesScene`, `ShapesGenerator`, `ShapesDataset`, `paligemma shapes`):
/// the world's rules on sampled scenes, rendered pixels, exact answer strings, detection codes that
/// parse back to the boxes, and a CLI data set that the fine-tuning reader accepts.
@Suite struct ShapesTests {
    // Hand-built objects (size 224) with their location codes round(v / 224 · 1023).
    static let redCircle = ShapeObject(kind: .circle, colorName: .red, x: 10, y: 20, side: 40)
    static let redCircleBox = "<loc0091><loc0046><loc0274><loc0228> circle"
    static let blueSquare = ShapeObject(kind: .square, colorName: .blue, x: 120, y: 100, side: 30)
    static let blueSquareBox = "<loc0457><loc0548><loc0594><loc0685> square"
    static let yellowTriangle = ShapeObject(kind: .triangle, colorName: .yellow, x: 170, y: 150, side: 28)
    static let yellowTriangleBox = "<loc0685><loc0776><loc0813><loc0904> triangle"
    static let greenSquare = ShapeObject(kind: .square, colorName: .green, x: 5, y: 180, side: 36)
    static let greenSquareBox = "<loc0822><loc0023><loc0986><loc0187> square"

    static func scene(_ objects: [ShapeObject]) -> ShapesScene {
        ShapesScene(size: 224, background: RGBColor(200, 210, 220), objects: objects)
    }

    static func scenes(size: Int, count: Int, seed: UInt64, antialias: ShapesAntialias = .random) throws -> [ShapesScene] {
        let generator = try ShapesGenerator(size: size, seed: seed, antialias: antialias)
        return (0..<count).map { generator.example($0).scene }
    }

    @Test("the same seed gives the same scenes and questions; another seed other ones; image i does not depend on the count")
    func determinism() throws {
        let a = try ShapesGenerator(seed: 42), b = try ShapesGenerator(seed: 42), c = try ShapesGenerator(seed: 43)
        for i in 0..<20 {
            #expect(a.example(i).scene == b.example(i).scene)
            #expect(a.example(i).questions == b.example(i).questions)
            #expect(a.example(i).scene.render() == b.example(i).scene.render())
        }
        #expect((0..<20).map { a.example($0).scene } != (0..<20).map { c.example($0).scene })
    }

    @Test("questionsPerImage keeps that many of each image's questions, in list order, drawn by the seed; the scenes do not change")
    func questionSubsets() throws {
        let all = try ShapesGenerator(seed: 5)
        #expect(throws: PaliGemmaError.self) { try ShapesGenerator(seed: 5, questionsPerImage: 0) }
        var drawn: [Set<Int>] = []
        for k in [1, 2, 3] {
            let some = try ShapesGenerator(seed: 5, questionsPerImage: k)
            var positions = Set<Int>()
            for i in 0..<40 {
                let (scene, questions) = some.example(i)
                let full = all.example(i)
                #expect(scene == full.scene && questions == some.example(i).questions)
                #expect(questions.count == k)
                // A subsequence of the full list: each kept question found after the previous one.
                var next = full.questions.startIndex
                for q in questions {
                    guard let at = full.questions[next...].firstIndex(of: q) else { Issue.record("image \(i): \(q) not in order"); break }
                    positions.insert(at)
                    next = at + 1
                }
            }
            drawn.append(positions)
        }
        // The draw reaches the whole list (9 to 12 questions), not only its first ones.
        #expect(drawn.allSatisfy { $0.count >= 9 }, "\(drawn.map(\.count))")
        // More than an image's list keeps all of it.
        #expect(try ShapesGenerator(seed: 5, questionsPerImage: 50).example(3).questions == all.example(3).questions)
    }

    @Test("alwaysKept keeps each image's caption and draws the rest from the other questions; nothing always kept is the plain draw")
    func alwaysKeptQuestions() throws {
        let all = try ShapesGenerator(seed: 5)
        #expect(throws: PaliGemmaError.self) { try ShapesGenerator(seed: 5, tasks: [.count], questionsPerImage: 2, alwaysKept: [.caption]) }
        // An empty list changes nothing: the same draw as before the option existed.
        let plain = try ShapesGenerator(seed: 5, questionsPerImage: 2)
        let none = try ShapesGenerator(seed: 5, questionsPerImage: 2, alwaysKept: [])
        #expect((0..<40).map { plain.example($0).questions } == (0..<40).map { none.example($0).questions })
        for k in [1, 2, 3] {
            let some = try ShapesGenerator(seed: 5, questionsPerImage: k, alwaysKept: [.caption])
            var others = Set<String>()
            for i in 0..<60 {
                let (scene, questions) = some.example(i)
                let full = all.example(i)
                #expect(scene == full.scene)
                #expect(questions.count == k, "image \(i): \(questions.count) questions for k = \(k)")
                #expect(questions.first == full.questions.first && questions.first?.prefix == "caption en", "image \(i)")
                #expect(questions.dropFirst().allSatisfy { $0.prefix != "caption en" && full.questions.contains($0) })
                // Kept in list order.
                let at = questions.compactMap { full.questions.firstIndex(of: $0) }
                #expect(at == at.sorted() && at.count == questions.count)
                questions.dropFirst().forEach { others.insert($0.prefix) }
            }
            // The others are drawn from all the other tasks, not only the first ones.
            if k > 1 { #expect(others.contains { $0.hasPrefix("detect") } && others.contains { $0.hasPrefix("answer en how many") }) }
        }
        // Two always-kept tasks beyond the count: all of them kept.
        let both = try ShapesGenerator(seed: 5, questionsPerImage: 1, alwaysKept: [.caption, .count])
        #expect(both.example(0).questions == Array(all.example(0).questions.prefix(5)))
    }

    @Test("sampled scenes keep every rule of the world", arguments: [(224, 300), (97, 100), (448, 100)])
    func worldRules(size: Int, count: Int) throws {
        let scenes = try Self.scenes(size: size, count: count, seed: UInt64(size))
        let sides = ShapesWorld.sides(size: size), gap = ShapesWorld.gap(size: size)
        if size == 224 { #expect(sides == 28...64 && gap == 4) }
        var objectCounts = Set<Int>(), kinds = Set<ShapeKind>(), names = Set<ShapeColorName>(), edges = Set<Bool>()
        for scene in scenes {
            #expect(scene.size == size)
            for channel in [scene.background.r, scene.background.g, scene.background.b] {
                #expect(ShapesWorld.backgroundRange.contains(Int(channel)))
            }
            #expect((1...4).contains(scene.objects.count))
            objectCounts.insert(scene.objects.count)
            edges.insert(scene.antialiased)
            for (i, o) in scene.objects.enumerated() {
                kinds.insert(o.kind)
                names.insert(o.colorName)
                #expect(sides.contains(o.side), "side \(o.side)")
                #expect(o.x >= 0 && o.y >= 0 && o.x + o.side <= size && o.y + o.side <= size, "inside the canvas")
                let base = o.colorName.base
                for (c, b) in [(o.color.r, base.r), (o.color.g, base.g), (o.color.b, base.b)] {
                    #expect(abs(Int(c) - Int(b)) <= 15, "colour \(o.color) vs \(base)")
                }
                for other in scene.objects[(i + 1)...] {
                    #expect(o.gap(to: other) >= gap, "boxes \(o) and \(other) closer than \(gap) px")
                }
                if i > 0 {
                    let previous = scene.objects[i - 1]
                    #expect(previous.centerX < o.centerX || (previous.centerX == o.centerX && previous.centerY < o.centerY),
                            "left to right by box centre")
                }
            }
        }
        // Everything the world allows shows up in a few hundred scenes.
        #expect(objectCounts == [1, 2, 3, 4] && kinds.count == 3 && names.count == 4 && edges == [false, true])
    }

    @Test("objectCounts: the whole range is the default draw; a narrower one gives only those counts, each count in turn, and checks its bounds")
    func objectCountRanges() throws {
        let plain = try ShapesGenerator(seed: 11), explicit = try ShapesGenerator(seed: 11, objectCounts: 1...4)
        for i in 0..<50 { #expect(plain.example(i) == explicit.example(i)) }
        let hard = try ShapesGenerator(seed: 11, objectCounts: 3...4)
        var seen = Set<Int>()
        for i in 0..<100 {
            let scene = hard.example(i).scene
            #expect((3...4).contains(scene.objects.count), "scene \(i) has \(scene.objects.count) objects")
            seen.insert(scene.objects.count)
        }
        #expect(seen == [3, 4])
        let four = try ShapesGenerator(seed: 11, objectCounts: 4...4)
        #expect((0..<20).allSatisfy { four.example($0).scene.objects.count == 4 })
        #expect(try ShapesGenerator.objectCounts("3-4") == 3...4 && ShapesGenerator.objectCounts(" 2 ") == 2...2)
        for bad in ["", "4-3", "1-", "a", "1-2-3"] {
            #expect(throws: PaliGemmaError.self, "\(bad)") { try ShapesGenerator.objectCounts(bad) }
        }
        for bad in [0...2, 2...5, 5...5] {
            #expect(throws: PaliGemmaError.self, "\(bad)") { try ShapesGenerator(seed: 1, objectCounts: bad) }
        }
    }

    @Test("rendering: each object's centre pixel has its colour, every pixel outside the boxes the background",
          arguments: [ShapesAntialias.on, .off])
    func pixels(antialias: ShapesAntialias) throws {
        for scene in try Self.scenes(size: 224, count: 60, seed: 9, antialias: antialias) {
            #expect(scene.antialiased == (antialias == .on))
            let image = scene.render()
            #expect(image.width == 224 && image.height == 224)
            for o in scene.objects {
                let p = image.pixel(x: o.x + o.side / 2, y: o.y + o.side / 2)
                #expect(p.map { RGBColor($0.0, $0.1, $0.2) } == o.color)
            }
            var differing = 0
            for y in 0..<224 {
                for x in 0..<224 {
                    let inBox = scene.objects.contains { x >= $0.x && x < $0.x + $0.side && y >= $0.y && y < $0.y + $0.side }
                    guard !inBox, let p = image.pixel(x: x, y: y) else { continue }
                    if RGBColor(p.0, p.1, p.2) != scene.background { differing += 1 }
                }
            }
            #expect(differing == 0)
        }
    }

    @Test("a square fills its box; a triangle's apex row is narrow and its base row full")
    func shapesDrawn() {
        let square = ShapeObject(kind: .square, colorName: .red, x: 10, y: 10, side: 30)
        let triangle = ShapeObject(kind: .triangle, colorName: .blue, x: 100, y: 100, side: 40)
        let image = ShapesScene(size: 224, background: RGBColor(255, 255, 255), objects: [square, triangle]).render()
        func isColor(_ x: Int, _ y: Int, _ c: RGBColor) -> Bool { image.pixel(x: x, y: y).map { RGBColor($0.0, $0.1, $0.2) } == c }
        #expect(isColor(10, 10, square.color) && isColor(39, 39, square.color) && isColor(10, 39, square.color))
        let top = (100..<140).filter { isColor($0, 100, triangle.color) }.count
        let bottom = (100..<140).filter { isColor($0, 139, triangle.color) }.count
        #expect(top <= 1 && bottom >= 38, "apex row \(top) px, base row \(bottom) px")
        #expect(!isColor(100, 100, triangle.color) && !isColor(139, 100, triangle.color), "the top corners are background")
    }

    @Test("answers of hand-built scenes with 1 to 4 objects")
    func answers() {
        let one = Self.scene([Self.redCircle])
        #expect(one.caption == "a red circle")
        #expect(one.detection([.circle]) == Self.redCircleBox)
        #expect(one.detection([.square]) == "" && one.detection([.triangle]) == "", "an absent shape: empty")
        #expect(one.colorName(of: .circle) == .red && one.colorName(of: .square) == nil)

        // Given right to left: listed left to right.
        let two = Self.scene([Self.blueSquare, Self.redCircle])
        #expect(two.caption == "a red circle and a blue square")
        #expect(two.detection([.circle, .square]) == "\(Self.redCircleBox) ; \(Self.blueSquareBox)")
        #expect(two.detection([.square, .circle]) == "\(Self.redCircleBox) ; \(Self.blueSquareBox)", "left to right whatever the label order")
        #expect(two.detection([.square, .triangle]) == Self.blueSquareBox)

        let three = Self.scene([Self.yellowTriangle, Self.redCircle, Self.blueSquare])
        #expect(three.caption == "a red circle, a blue square and a yellow triangle")
        #expect(three.detection([.circle, .triangle]) == "\(Self.redCircleBox) ; \(Self.yellowTriangleBox)")

        let four = Self.scene([Self.yellowTriangle, Self.redCircle, Self.blueSquare, Self.greenSquare])
        #expect(four.caption == "a green square, a red circle, a blue square and a yellow triangle")
        #expect(four.detection([.square]) == "\(Self.greenSquareBox) ; \(Self.blueSquareBox)")
        #expect(four.count(of: .square) == 2 && four.count(of: .circle) == 1 && four.count(of: .triangle) == 1)
        #expect(four.colorName(of: .square) == nil && four.colorName(of: .triangle) == .yellow)

        var rng = Xoshiro256(seed: 1)
        let questions = four.questions(ShapesTask.allCases, rng: &rng)
        let expected: [(String, String)] = [
            ("caption en", "a green square, a red circle, a blue square and a yellow triangle"),
            ("answer en how many shapes are there?", "4"),
            ("answer en how many circles are there?", "1"),
            ("answer en how many squares are there?", "2"),
            ("answer en how many triangles are there?", "1"),
            ("answer en what color is the circle?", "red"),
            ("answer en what color is the triangle?", "yellow"),
            ("detect circle", Self.redCircleBox),
            ("detect square", "\(Self.greenSquareBox) ; \(Self.blueSquareBox)"),
            ("detect triangle", Self.yellowTriangleBox),
        ]
        #expect(questions.count == expected.count + 1)
        for (q, e) in zip(questions, expected) { #expect(q == ShapesQuestion(prefix: e.0, suffix: e.1)) }
        let pair = questions[expected.count]
        let labels = pair.prefix.dropFirst("detect ".count).components(separatedBy: " ; ").compactMap(ShapeKind.init(rawValue:))
        #expect(pair.prefix.hasPrefix("detect ") && labels.count == 2 && Set(labels).count == 2)
        #expect(pair.suffix == four.detection(labels))
        // Only the tasks asked for.
        #expect(one.questions([.color], rng: &rng) == [ShapesQuestion(prefix: "answer en what color is the circle?", suffix: "red")])
    }

    @Test("eval groups: each line's set, captions also by their number of objects, listed in the sets' order")
    func evaluationGroups() {
        let scenes = [[Self.redCircle], [Self.blueSquare, Self.redCircle],
                      [Self.yellowTriangle, Self.redCircle, Self.blueSquare],
                      [Self.yellowTriangle, Self.redCircle, Self.blueSquare, Self.greenSquare]].map { Self.scene($0) }
        for (n, scene) in zip(1..., scenes) {
            #expect(ShapesTask.evaluationGroups(prefix: "caption en", suffix: scene.caption)
                    == ["caption", n == 1 ? "caption, 1 object" : "caption, \(n) objects"])
        }
        #expect(ShapesTask.evaluationGroups(prefix: "answer en how many circles are there?", suffix: "0") == ["count"])
        #expect(ShapesTask.evaluationGroups(prefix: "answer en what color is the square?", suffix: "blue") == ["color"])
        #expect(ShapesTask.evaluationGroups(prefix: "detect circle ; square", suffix: "") == ["detect"])
        #expect(ShapesTask.evaluationGroups(prefix: "ocr", suffix: "a red circle") == ["other"])
        let listed = ["other", "detect", "caption, 4 objects", "color", "caption, 1 object", "count", "caption", "caption, 2 objects"]
            .sorted { ShapesTask.evaluationGroupRank($0) < ShapesTask.evaluationGroupRank($1) }
        #expect(listed == ["caption", "caption, 1 object", "caption, 2 objects", "caption, 4 objects", "count", "color", "detect", "other"])
    }

    @Test("detect answers parse back through DetectionParser to boxes within 1/1023 of the truth")
    func detectionsParse() throws {
        for size in [224, 97] {
            for scene in try Self.scenes(size: size, count: 200, seed: 5) {
                for labels in [[ShapeKind.circle], [.square], [.triangle], [.circle, .triangle], [.square, .circle]] {
                    let truth = scene.objects.filter { labels.contains($0.kind) }
                    let (objects, skipped) = DetectionParser.parse(scene.detection(labels))
                    #expect(skipped.isEmpty && objects.count == truth.count)
                    for (parsed, o) in zip(objects, truth) {
                        #expect(parsed.label == o.kind.rawValue)
                        let s = Double(size), box = parsed.normalizedBox
                        for (a, b) in [(box.xMin, Double(o.x) / s), (box.yMin, Double(o.y) / s),
                                       (box.xMax, Double(o.x + o.side) / s), (box.yMax, Double(o.y + o.side) / s)] {
                            #expect(abs(a - b) <= 1.0 / 1023, "\(a) vs \(b)")
                        }
                    }
                }
            }
        }
    }

    @Test("generator arguments: size range, task names, count")
    func arguments() throws {
        #expect(throws: PaliGemmaError.self) { try ShapesGenerator(size: 32, seed: 1) }
        #expect(throws: PaliGemmaError.self) { try ShapesGenerator.tasks("caption,colour") }
        #expect(throws: PaliGemmaError.self) { try ShapesGenerator.tasks("") }
        #expect(try ShapesGenerator.tasks("detect, caption,detect") == [.detect, .caption])
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: PaliGemmaError.self) { try ShapesDataset.write(try ShapesGenerator(seed: 1), count: 0, to: dir) }
    }

    @Test("paligemma shapes writes the same bytes for the same seed, lines TrainingData.read accepts, and refuses a non-empty folder")
    func command() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let a = dir.appendingPathComponent("a"), b = dir.appendingPathComponent("b")
        for out in [a, b] {
            let run = try EndToEndTests.run(["shapes", "--output", out.path, "--count", "12", "--seed", "3", "--size", "128"])
            #expect(run.status == 0, "\(run.stderr)")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: a.path).sorted()
        #expect(names == (0..<12).map { String(format: "%05d.png", $0) } + ["data.jsonl"])
        for name in names {
            #expect(try Data(contentsOf: a.appendingPathComponent(name)) == Data(contentsOf: b.appendingPathComponent(name)), "\(name) differs")
        }
        let image = try ImageDecoder.decode(contentsOf: a.appendingPathComponent("00003.png"))
        let generator = try ShapesGenerator(size: 128, seed: 3)
        #expect(image == generator.example(3).scene.render())

        let records = try TrainingData.read(jsonl: a.appendingPathComponent("data.jsonl"))
        let questions = (0..<12).flatMap { i in generator.example(i).questions.map { (i, $0) } }
        #expect(records.count == questions.count && (9 * 12...12 * 12).contains(records.count))
        for (record, (i, q)) in zip(records, questions) {
            #expect(record.image.lastPathComponent == String(format: "%05d.png", i) && record.prefix == q.prefix && record.suffix == q.suffix)
        }
        let line = try String(contentsOf: a.appendingPathComponent("data.jsonl"), encoding: .utf8).split(separator: "\n")[0]
        #expect(line == #"{"image":"00000.png","prefix":"caption en","suffix":"\#(generator.example(0).scene.caption)"}"#)

        let again = try EndToEndTests.run(["shapes", "--output", a.path, "--count", "1", "--seed", "3"])
        #expect(again.status != 0 && again.stderr.contains("not empty"), "\(again.stderr)")
        let only = dir.appendingPathComponent("c")
        let captions = try EndToEndTests.run(["shapes", "--output", only.path, "--count", "2", "--seed", "3", "--tasks", "caption", "--antialias", "off"])
        #expect(captions.status == 0, "\(captions.stderr)")
        #expect(try TrainingData.read(jsonl: only.appendingPathComponent("data.jsonl")).map(\.prefix) == ["caption en", "caption en"])
        let bad = try EndToEndTests.run(["shapes", "--output", dir.appendingPathComponent("d").path, "--count", "2", "--seed", "3", "--tasks", "colour"])
        #expect(bad.status == 65 && bad.stderr.contains("colour"), "\(bad.stderr)")
        let two = dir.appendingPathComponent("e")
        let pairs = try EndToEndTests.run(["shapes", "--output", two.path, "--count", "5", "--seed", "3", "--questions", "2"])
        #expect(pairs.status == 0, "\(pairs.stderr)")
        let kept = try ShapesGenerator(seed: 3, questionsPerImage: 2)
        #expect(try TrainingData.read(jsonl: two.appendingPathComponent("data.jsonl")).map(\.prefix)
                == (0..<5).flatMap { kept.example($0).questions.map(\.prefix) })
        let none = try EndToEndTests.run(["shapes", "--output", dir.appendingPathComponent("f").path, "--count", "2", "--seed", "3", "--questions", "0"])
        #expect(none.status == 65 && none.stderr.contains("--questions"), "\(none.stderr)")
        let crowded = dir.appendingPathComponent("g")
        let hard = try EndToEndTests.run(["shapes", "--output", crowded.path, "--count", "4", "--seed", "3", "--objects", "3-4", "--tasks", "caption"])
        #expect(hard.status == 0, "\(hard.stderr)")
        let hardGenerator = try ShapesGenerator(seed: 3, tasks: [.caption], objectCounts: 3...4)
        #expect(try TrainingData.read(jsonl: crowded.appendingPathComponent("data.jsonl")).map(\.suffix)
                == (0..<4).map { hardGenerator.example($0).scene.caption })
        let outside = try EndToEndTests.run(["shapes", "--output", dir.appendingPathComponent("h").path, "--count", "2", "--seed", "3", "--objects", "0-5"])
        #expect(outside.status == 65 && outside.stderr.contains("--objects"), "\(outside.stderr)")
    }
}
