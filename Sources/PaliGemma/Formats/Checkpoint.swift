import Foundation
import PaliGemmaJSON

/// A Hugging Face checkpoint folder: `config.json` plus `model.safetensors`, or shards listed
/// in `model.safetensors.index.json`. Tensor names are brought to one canonical spelling (the
/// hub's transformers 4.x names) whichever of the known spellings the files use.
public final class Checkpoint: Sendable {
    public let directory: URL
    public let config: PaliGemmaConfig
    public let files: [SafetensorsFile]
    /// canonical name -> (file, name as stored)
    let index: [String: (file: SafetensorsFile, stored: String)]

    /// Opens the folder; `configStrictness` says what an unknown config.json key does (by
    /// default it is listed in `config.unknownKeys`).
    public init(directory: URL, configStrictness: ConfigStrictness = .lenient) throws {
        self.directory = directory
        let configURL = directory.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: configURL.path) else {
            throw PaliGemmaError.io(path: configURL.path, reason: "missing: a checkpoint folder needs config.json")
        }
        config = try PaliGemmaConfig.load(from: configURL, strictness: configStrictness)
        files = try Self.openWeights(directory)
        var index: [String: (file: SafetensorsFile, stored: String)] = [:]
        for file in files {
            for name in file.names {
                let canonical = Self.canonicalName(name)
                if let other = index[canonical] {
                    throw PaliGemmaError.safetensors(path: file.path, tensor: name,
                        reason: "the same weight also appears as '\(other.stored)' in \(other.file.path)")
                }
                index[canonical] = (file, name)
            }
        }
        self.index = index
    }

    static func openWeights(_ directory: URL) throws -> [SafetensorsFile] {
        let indexURL = directory.appendingPathComponent("model.safetensors.index.json")
        let single = directory.appendingPathComponent("model.safetensors")
        if FileManager.default.fileExists(atPath: indexURL.path) {
            return try openSharded(indexURL: indexURL, directory: directory)
        }
        if FileManager.default.fileExists(atPath: single.path) {
            return [try SafetensorsFile(path: single.path)]
        }
        throw PaliGemmaError.io(path: directory.path,
            reason: "no model.safetensors or model.safetensors.index.json in the folder")
    }

    static func openSharded(indexURL: URL, directory: URL) throws -> [SafetensorsFile] {
        let path = indexURL.path
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: indexURL)) } catch {
            throw PaliGemmaError.io(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        let (shardNames, expected) = try shardNames(indexBytes: bytes, path: path)
        let files = try shardNames.map { try SafetensorsFile(path: directory.appendingPathComponent($0).path) }
        for (shard, file) in zip(shardNames, files) {
            for name in file.names where expected[name] != shard {
                if let listed = expected[name] {
                    throw PaliGemmaError.safetensors(path: file.path, tensor: name, reason: "the index places it in '\(listed)'")
                }
                throw PaliGemmaError.safetensors(path: file.path, tensor: name, reason: "not listed in model.safetensors.index.json")
            }
        }
        let byShard = Dictionary(uniqueKeysWithValues: zip(shardNames, files))
        for (tensor, shard) in expected {
            guard let file = byShard[shard], file.entries[tensor] != nil else {
                throw PaliGemmaError.safetensors(path: directory.appendingPathComponent(shard).path, tensor: tensor,
                                                 reason: "listed in model.safetensors.index.json but absent from the shard")
            }
        }
        return files
    }

    /// The shard files a model.safetensors.index.json names (in first-listed order, each a plain
    /// file name in the folder) and the shard of each tensor.
    static func shardNames(indexBytes bytes: [UInt8], path: String) throws -> (shards: [String], tensors: [String: String]) {
        let json: JSONValue
        do { json = try JSONParser.parse(bytes, rejectDuplicateKeys: true) } catch {
            throw PaliGemmaError.config(path: path, key: nil, reason: "not valid JSON: \(error)")
        }
        guard let map = json["weight_map"]?.objectValue else {
            throw PaliGemmaError.config(path: path, key: "weight_map", reason: "missing or not an object")
        }
        var shardNames: [String] = []
        var expected: [String: String] = [:]
        for (tensor, value) in map {
            guard let shard = value.stringValue else {
                throw PaliGemmaError.config(path: path, key: "weight_map.\(tensor)", reason: "expected a file name")
            }
            guard !shard.contains("/"), !shard.hasPrefix("."), !shard.isEmpty else {
                throw PaliGemmaError.config(path: path, key: "weight_map.\(tensor)", reason: "shard '\(shard)' is not a plain file name in the folder")
            }
            if !shardNames.contains(shard) { shardNames.append(shard) }
            expected[tensor] = shard
        }
        return (shardNames, expected)
    }

    /// The hub's spelling (transformers 4.x) for any known spelling of a weight's name.
    public static func canonicalName(_ name: String) -> String {
        let rules: [(String, String)] = [
            ("model.vision_tower.vision_model.", "vision_tower.vision_model."),
            ("model.vision_tower.", "vision_tower.vision_model."),
            ("vision_tower.vision_model.", "vision_tower.vision_model."),
            ("vision_tower.", "vision_tower.vision_model."),
            ("model.multi_modal_projector.", "multi_modal_projector."),
            ("model.language_model.model.", "language_model.model."),
            ("model.language_model.", "language_model.model."),
            ("language_model.lm_head.", "language_model.lm_head."),
            ("lm_head.", "language_model.lm_head."),
        ]
        for (from, to) in rules where name.hasPrefix(from) {
            return to + name.dropFirst(from.count)
        }
        return name
    }

    /// Canonical names of every tensor in the checkpoint.
    public var tensorNames: [String] { index.keys.sorted() }

    /// The tensor with this canonical name, or nil.
    public func tensor(canonical name: String) throws -> Tensor? {
        guard let (file, stored) = index[name] else { return nil }
        return try file.tensor(stored)
    }

    /// The stored dtype of the tensor with this canonical name, or nil.
    public func dtype(canonical name: String) -> DType? {
        index[name].flatMap { $0.file.entries[$0.stored]?.dtype }
    }

    /// The name as stored in the files, for messages.
    public func storedName(_ canonical: String) -> String { index[canonical]?.stored ?? canonical }

    /// Total bytes of tensor data.
    public var dataBytes: Int { files.reduce(0) { $0 + $1.entries.values.reduce(0) { $0 + $1.end - $1.begin } } }
}
