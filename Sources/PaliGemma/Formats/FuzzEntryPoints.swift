import Foundation
import PaliGemmaJSON

/// The parsers of this module that read bytes a stranger may have written, each as one call
/// that takes any bytes and must return (an error thrown and caught is a return) without a
/// crash, a hang or a sanitizer report. `paligemma-fuzz` runs them under libFuzzer
/// (scripts/fuzz.sh) and the test suite replays their corpora (Fuzz/corpus/<name>/).
public enum FuzzEntryPoints {
    public static let targets: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
        ("safetensors", safetensors),
        ("shard-index", shardIndex),
        ("config", config),
        ("npy", { _ = try? NPY.parse($0, path: "fuzz.npy") }),
        ("npz", npz),
        ("adapter-config", { _ = try? LoRAAdapter.readConfig($0, path: "adapter_config.json") }),
        ("finetune-jsonl", { _ = try? TrainingData.read(jsonl: $0, path: "train.jsonl", base: URL(fileURLWithPath: "/nonexistent")) }),
        ("answer", answer),
        ("batch-line", batchLine),
    ]

    /// A whole .safetensors file; a header that passes is read tensor by tensor as the loader does.
    static func safetensors(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { buffer in
            guard let header = try? SafetensorsFile.header(buffer, path: "fuzz.safetensors") else { return }
            for name in header.names {
                guard let e = header.entries[name] else { continue }
                precondition(header.dataOffset + e.end <= buffer.count, "tensor '\(name)' ends past the file")
            }
        }
    }

    /// model.safetensors.index.json: parsed and checked as `Checkpoint.openSharded` does, in a
    /// folder with no shards (so every listed shard is then missing, an error).
    static func shardIndex(_ bytes: [UInt8]) {
        _ = try? Checkpoint.shardNames(indexBytes: bytes, path: "model.safetensors.index.json")
    }

    /// config.json, loaded leniently and strictly.
    static func config(_ bytes: [UInt8]) {
        let data = Data(bytes)
        _ = try? PaliGemmaConfig.parse(data, path: "config.json", strictness: .lenient)
        _ = try? PaliGemmaConfig.parse(data, path: "config.json", strictness: .strict)
    }

    /// A .npz archive, every member read.
    static func npz(_ bytes: [UInt8]) {
        guard let archive = try? NPZArchive(bytes: bytes, path: "fuzz.npz") else { return }
        for name in archive.names { _ = try? archive.array(name) }
    }

    /// A batch requests line (`BatchLine.parse`), and the same bytes as a results line read on resume.
    static func batchLine(_ bytes: [UInt8]) {
        let raw = String(decoding: bytes, as: UTF8.self)
        if case let .request(r) = BatchLine.parse(raw, line: 1, base: URL(fileURLWithPath: "/nonexistent"),
                                                  options: GenerationOptions(), sampling: FrameSampling()) {
            precondition(!r.paths.isEmpty && r.options.maxNewTokens >= 1, "a request without files or tokens to generate")
        }
        _ = try? JSONDecoder().decode(BatchLine.Answered.self, from: Data(bytes))
    }

    /// A generated answer parsed as detections and as segments (without a mask decoder), at a
    /// small and a degenerate image size.
    static func answer(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        _ = DetectionParser.parse(text)
        _ = try? TaskOutput.parse(text: text, imageWidth: 640, imageHeight: 480, maskDecoder: nil)
        _ = try? TaskOutput.parse(text: text, imageWidth: 1, imageHeight: 1, maskDecoder: nil)
    }
}
