import Foundation
import PaliGemma
import PaliGemmaJSON
@testable import PaliGemmaServer
import Testing

/// `--adapter NAME=DIR`: several LoRA adapters on one base, chosen by a request's `model`.
@Suite("Served adapters")
struct ServedAdapterServerTests {
    /// Writes a LoRA adapter for the shapes model with non-zero A and B (so it changes the
    /// answers): `targets` by PEFT's suffix rule, values from `seed`.
    static func makeAdapter(_ name: String, targets: [String], seed: UInt64, scale: Float) throws -> URL {
        let model = try PaliGemmaModel(directory: shapesModel)
        let trainable = TrainableModel(model: model, method: .lora(LoRAConfig(rank: 4, alpha: 8, targets: targets)), seed: seed)
        var state = seed &+ 0x9e37_79b9_7f4a_7c15
        for p in trainable.parametersByName.values.sorted(by: { $0.name < $1.name }) where p.name.hasSuffix(".lora_B.weight") {
            for i in 0..<p.value.count {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                p.value.data[i] = (Float(state >> 40) / Float(1 << 24) - 0.5) * scale
            }
        }
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pg-served-\(getpid())-\(name)")
        try? FileManager.default.removeItem(at: folder)
        try trainable.adapter(baseModel: shapesModel.path).write(to: folder)
        return folder
    }

    @Test("requests choose an adapter by model; mixed requests share steps and each answers as that adapter alone")
    func servedAdapters() async throws {
        // q_proj and v_proj name SigLIP's layers too (PEFT's suffix rule); o_proj, gate_proj and
        // down_proj only the decoder's.
        // Off the cooperative pool: loading models and generating with the library is long
        // synchronous work (minutes under the sanitizers).
        let (decoderOnly, withVision, expected) = try await offPool { () -> (URL, URL, [String: String]) in
            let decoderOnly = try Self.makeAdapter("dec", targets: ["o_proj", "gate_proj", "down_proj"], seed: 3, scale: 2)
            let withVision = try Self.makeAdapter("vis", targets: ["q_proj", "v_proj", "fc1", "out_proj", "linear"], seed: 4, scale: 2)
            // What each would say alone: the library with the adapter applied to the whole model.
            func alone(_ adapter: URL?) throws -> String {
                let pipeline = try PaliGemmaPipeline(directory: shapesModel, adapter: adapter)
                let picture = try ImageDecoder.decode(contentsOf: repositoryRoot.appendingPathComponent("Examples/shapes.png"))
                return try pipeline.generate(images: [picture], prompt: "caption en", options: GenerationOptions(maxNewTokens: 24)).text
            }
            return (decoderOnly, withVision, ["shapes-tiny": try alone(nil), "dec": try alone(decoderOnly), "vis": try alone(withVision)])
        }
        defer {
            try? FileManager.default.removeItem(at: decoderOnly)
            try? FileManager.default.removeItem(at: withVision)
        }
        #expect(Set(expected.values).count == 3, "the adapters should change the caption: \(expected)")

        let s = try await TestServer {
            $0.adapters = [NamedAdapter(name: "dec", directory: decoderOnly), NamedAdapter(name: "vis", directory: withVision)]
        }
        let models = try await s.request(.GET, "/v1/models")
        guard case let .array(list)? = models.json?["data"] else { Issue.record("no data: \(models.body)"); return }
        #expect(list.compactMap { $0["id"]?.stringValue } == ["shapes-tiny", "dec", "vis"])
        #expect(list[1]["parent"]?.stringValue == "shapes-tiny")
        #expect(list[1]["adapter"]?["adapts_vision"]?.boolValue == false)
        #expect(list[2]["adapter"]?["adapts_vision"]?.boolValue == true)
        #expect(list[2]["adapter"]?["rank"]?.intValue == 4)

        let image = try dataURL("Examples/shapes.png")
        // Twice over, all at once: the second round finds its image features in the vision
        // cache, which must keep the vision adapter's apart from the base's.
        for round in 0..<2 {
            try await withThrowingTaskGroup(of: (String, String, Int).self) { group in
                for name in ["shapes-tiny", "dec", "vis", "dec", "shapes-tiny", "vis"] {
                    group.addTask {
                        let reply = try await s.post("/v1/chat/completions",
                                                     chatBody("caption en", image: image, extra: ["model": name, "max_tokens": 24]))
                        return (name, reply.json?["choices"]?[0]?["message"]?["content"]?.stringValue ?? reply.body, reply.status)
                    }
                }
                for try await (name, text, status) in group {
                    #expect(status == 200, "\(name): \(text)")
                    #expect(text == expected[name], "round \(round), \(name): \(text) vs \(expected[name] ?? "?")")
                }
            }
        }
        // The typed endpoints and /v1/completions take "model" too.
        let typed = try await s.post("/v1/caption", ["image": image, "model": "vis", "max_tokens": 24])
        #expect(typed.json?["text"]?.stringValue == expected["vis"], "\(typed.body)")
        let completion = try await s.post("/v1/completions", ["prompt": "caption en", "image": image, "model": "dec", "max_tokens": 24])
        #expect(completion.json?["choices"]?[0]?["text"]?.stringValue == expected["dec"], "\(completion.body)")
        #expect(completion.json?["model"]?.stringValue == "dec")
        // Requests of different adapters ran in the same steps.
        let metrics = try await s.request(.GET, "/metrics").body.split(separator: "\n")
        func value(_ prefix: String) -> Double? {
            metrics.first { $0.hasPrefix(prefix) }.flatMap { Double($0.split(separator: " ").last ?? "") }
        }
        let steps = value("paligemma_step_sequences_count") ?? 0
        let single = value("paligemma_step_sequences_bucket{le=\"1\"") ?? value("paligemma_step_sequences_bucket{le=\"1.0\"") ?? -1
        #expect(steps > single && single >= 0, "every step had one sequence: \(steps) steps, \(single) of one")
        // An unknown model is a 404 in OpenAI's shape.
        let unknown = try await s.post("/v1/chat/completions", chatBody("caption en", image: image, extra: ["model": "nope"]))
        #expect(unknown.status == 404, "\(unknown.body)")
        #expect(unknown.json?["error"]?["code"]?.stringValue == "model_not_found")
        #expect(unknown.json?["error"]?["param"]?.stringValue == "model")
        try await s.stop()
    }

    @Test("an adapter that does not fit the model stops the server from loading, naming the tensor")
    func misfitAdapter() async throws {
        let folder = try await offPool { try Self.makeAdapter("misfit", targets: ["q_proj"], seed: 5, scale: 0.1) }
        defer { try? FileManager.default.removeItem(at: folder) }
        // The same adapter read back with one module renamed to a layer the model lacks.
        var adapter = try LoRAAdapter(directory: folder)
        let module = try #require(adapter.modules.values.first)
        adapter.modules = ["language_model.model.layers.77.self_attn.q_proj": module]
        try adapter.write(to: folder, overwrite: true)
        var options = ServerOptions()
        options.adapters = [NamedAdapter(name: "m", directory: folder)]
        let server = InferenceServer(options: options) { (try PaliGemmaPipeline(directory: shapesModel), nil) }
        #expect(throws: PaliGemmaError.self) { _ = try server.start() }
        #expect(server.loadFailure?.contains("layers.77") == true, "\(server.loadFailure ?? "loaded")")
        #expect(server.backend == nil)
        // The base model's id is not an adapter name.
        options.adapters = [NamedAdapter(name: "shapes-tiny", directory: folder)]
        let taken = InferenceServer(options: options) { (try PaliGemmaPipeline(directory: shapesModel), nil) }
        #expect(throws: PaliGemmaError.self) { _ = try taken.start() }
    }
}
