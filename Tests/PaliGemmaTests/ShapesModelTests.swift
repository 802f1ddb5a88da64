import Foundation
import Testing
@testable import PaliGemma

/// The bundled model (Models/shapes-tiny, trained here from random initialisation by
/// scripts/train_shapes_model.sh): transformers gives the same greedy answers from the same
/// folder, and it answers freshly drawn scenes of its world as well as it was measured to.
@Suite(.serialized)
struct ShapesModelTests {
    static let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Models/shapes-tiny")
    static let parity = Fixtures.root.appendingPathComponent("shapes-parity")

    struct Expected: Decodable {
        let image: String
        let prefix: String
        let reference: String
        let input_ids: [Int]
        let generated_ids: [Int]
        let text: String
    }

    @Test("transformers, loading the same folder, gives the same prompt ids, first logits, greedy ids and text")
    func parityWithTransformers() throws {
        let pipeline = try PaliGemmaPipeline(directory: Self.folder)
        let expected = try JSONDecoder().decode([Expected].self, from: Data(contentsOf: Self.parity.appendingPathComponent("expected.json")))
        let logits = try SafetensorsFile(path: Self.parity.appendingPathComponent("expected.safetensors").path)
            .tensor("first_step_logits").floats()
        let vocabulary = logits.count / max(expected.count, 1)
        #expect(expected.count >= 40)
        var worst: Float = 0
        var sameText = 0
        for (i, e) in expected.enumerated() {
            #expect(pipeline.promptIDs(e.prefix) == e.input_ids, "prompt ids of \(e.prefix)")
            let image = try ImageDecoder.decode(contentsOf: Self.parity.appendingPathComponent(e.image))
            let result = try pipeline.generate(image: image, prompt: e.prefix, options: GenerationOptions(maxNewTokens: 40), keepLogits: true)
            let reference = Array(logits[(i * vocabulary)..<((i + 1) * vocabulary)])
            worst = max(worst, maxAbsDiff(result.stepLogits?.first ?? [], reference).diff)
            let ids = e.generated_ids.last == 1 ? Array(e.generated_ids.dropLast()) : e.generated_ids
            #expect(result.tokens == ids, "\(e.image) \(e.prefix): ids \(result.tokens) vs transformers' \(ids)")
            #expect(result.text == e.text, "\(e.image) \(e.prefix)")
            sameText += result.text == e.text ? 1 : 0
        }
        print("[shapes parity] \(expected.count) prompts, \(sameText) identical answers; first-step logits max |diff| \(worst)")
        #expect(worst <= 1e-3)
    }

    /// Scenes from a seed never used in training (13 and 14; 1 to 12 for the earlier weights) or
    /// validation (2), scored as `paligemma eval --group-by shapes` scores them, on a sample sized
    /// for CI (a debug build answers about two questions a second). The bundled model meets the
    /// issue's targets (caption 95%, counting 95%, colour 98%, box F1 0.90, mean IoU 0.75) on 1,000
    /// scenes: caption 96.4%, counting 99.9%, colour 100%, box F1 0.975, mean IoU 0.988
    /// (Models/shapes-tiny/README.md). On this sample it gets caption 1.000 (16 of 16), counting
    /// 0.984, colour 1.000, box F1 1.000 and mean IoU 0.989 (the earlier weights: 1.000, 0.984,
    /// 1.000, 0.957, 0.942); these floors sit below that with room for
    /// answers that flip on other kernels' rounding, and well above chance (25% for a colour or
    /// the number of shapes, no boxes at all), so a model that stops looking at the image, or a
    /// broken preprocessing or loading path, fails.
    @Test("fresh scenes: captions, counting, colour and boxes well above chance, as measured")
    func accuracyOnFreshScenes() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: dir) }
        let generator = try ShapesGenerator(size: 224, seed: 20_261_202)
        _ = try ShapesDataset.write(generator, count: 16, to: dir.appendingPathComponent("scenes"))
        let pipeline = try PaliGemmaPipeline(directory: Self.folder)
        let records = try TrainingData.read(jsonl: dir.appendingPathComponent("scenes/data.jsonl"))
        let report = try Evaluation.run(pipeline: pipeline, records: records, maxTokens: 48,
                                        groupBy: { ShapesTask.evaluationGroups(prefix: $0.prefix, suffix: $0.suffix) })
        let groups = Dictionary(uniqueKeysWithValues: (report.groups ?? []).map { ($0.name, $0.report) })
        for g in report.groups ?? [] {
            let d = g.report.detection.map { String(format: ", boxes F1 %.3f, mean IoU %.3f", $0.f1, $0.meanIoU) } ?? ""
            print("[shapes accuracy] \(g.name): \(g.report.examples) questions, exact match \(String(format: "%.3f", g.report.exactMatch))\(d)")
        }
        #expect(Set(groups.keys).isSuperset(of: ["caption", "count", "color", "detect"]))
        let byObjects = groups.filter { $0.key.hasPrefix("caption, ") }.values
        #expect(!byObjects.isEmpty && byObjects.reduce(0) { $0 + $1.examples } == groups["caption"]?.examples,
                "every caption in exactly one group by number of objects")
        #expect((groups["caption"]?.exactMatch ?? 0) >= 0.8)
        #expect((groups["count"]?.exactMatch ?? 0) >= 0.9)
        #expect((groups["color"]?.exactMatch ?? 0) >= 0.9)
        #expect((groups["detect"]?.detection?.f1 ?? 0) >= 0.9, "most boxes right at IoU 0.5")
        #expect((groups["detect"]?.detection?.meanIoU ?? 0) >= 0.9, "matched boxes close to the objects")
    }
}
