import Foundation
import PaliGemmaJSON

/// Writes a checkpoint folder with random weights in the real layout (the hub's tensor names,
/// sharded safetensors plus index, config.json), loadable here and by transformers. For
/// benchmarks at the published sizes, where the real weights are not at hand.
///
/// Values: matrices uniform with standard deviation 1/sqrt(fan_in), token embeddings 0.02, vision
/// position embeddings 1/sqrt(width), LayerNorm scales 1 and biases 0, RMSNorm offsets 0:
/// numerically tame, so generation runs as it would, and a sound start for training from scratch.
/// With `locRows` (the ids of `<loc0000>`…`<loc1023>`), those embedding rows are instead
/// sinusoids of the coordinate (`locEmbedding`); with `sincosPositions`, SigLIP's position
/// embeddings are the 2D sin-cos table of the patch grid (`gridPosition`). Every other value is
/// drawn as it would be, so the same seed gives the same remaining weights either way.
public enum RandomCheckpoint {
    public static func write(configJSON: String, dtype: DType, to directory: URL, seed: UInt64 = 0, locRows: Range<Int>? = nil,
                             sincosPositions: Bool = false, maxShardBytes: Int = 2 << 30, progress: (Int, Int) -> Void = { _, _ in }) throws {
        guard dtype.isFloat else { throw PaliGemmaError.input("random checkpoints are F32, BF16 or F16") }
        let config = try PaliGemmaConfig.parse(Data(configJSON.utf8), path: "config.json")
        let tensors = try PaliGemmaModel.expectedTensors(config: config)
        let fm = FileManager.default
        if fm.fileExists(atPath: directory.appendingPathComponent("config.json").path) {
            throw PaliGemmaError.io(path: directory.path, reason: "already holds a checkpoint; refusing to overwrite it")
        }
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)

        // Group tensors into shards in order.
        var shards: [[(name: String, shape: [Int])]] = [[]]
        var shardBytes = 0
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * dtype.size
            if shardBytes > 0 && shardBytes + bytes > maxShardBytes {
                shards.append([])
                shardBytes = 0
            }
            shards[shards.count - 1].append(t)
            shardBytes += bytes
        }
        let total = tensors.reduce(0) { $0 + $1.shape.reduce(1, *) * dtype.size }
        var written = 0
        var rng = Xoshiro256(seed: seed)
        var weightMap: [(String, String)] = []
        for (i, shard) in shards.enumerated() {
            let name = SafetensorsIndex.shardName(i, of: shards.count)
            let final = directory.appendingPathComponent(name)
            let temporary = directory.appendingPathComponent(".\(name).partial")
            _ = try? fm.removeItem(at: temporary)
            try writeShard(shard, dtype: dtype, to: temporary, rng: &rng, locRows: locRows, sincosPositions: sincosPositions) { written += $0; progress(written, total) }
            _ = try? fm.removeItem(at: final)
            try fm.moveItem(at: temporary, to: final)
            weightMap += shard.map { ($0.name, name) }
        }
        if shards.count > 1 {
            try SafetensorsIndex.write(weightMap: weightMap, totalSize: total,
                                       to: directory.appendingPathComponent(SafetensorsIndex.fileName))
        }
        try Data(configJSON.utf8).write(to: directory.appendingPathComponent("config.json"), options: .atomic)
    }

    /// The config.json at `url` with every `torch_dtype` (top level, text_config, vision_config)
    /// set to `dtype` ("float32", "bfloat16", "float16"), checked to parse as a PaliGemma config.
    public static func configJSON(contentsOf url: URL, dtype: String) throws -> String {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot read the config (\(error.localizedDescription))")
        }
        guard var top = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw PaliGemmaError.input("\(url.path): not a JSON object")
        }
        top["torch_dtype"] = dtype
        for key in ["text_config", "vision_config"] {
            if var sub = top[key] as? [String: Any] {
                sub["torch_dtype"] = dtype
                top[key] = sub
            }
        }
        let out = try JSONSerialization.data(withJSONObject: top, options: [.prettyPrinted, .sortedKeys])
        _ = try PaliGemmaConfig.parse(out, path: url.path)
        return String(decoding: out, as: UTF8.self) + "\n"
    }

    /// Files a checkpoint folder holds besides its config and weights, copied from the config's
    /// folder by `paligemma random-checkpoint --config` so the new folder runs as it is.
    public static let companionFiles = ["tokenizer.model", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "preprocessor_config.json", "generation_config.json"]

    /// Copies those of `companionFiles` that `source` holds into `folder` (never replacing a
    /// file there); returns their names.
    public static func copyCompanionFiles(from source: URL, to folder: URL) throws -> [String] {
        let fm = FileManager.default
        var copied: [String] = []
        for name in companionFiles where fm.fileExists(atPath: source.appendingPathComponent(name).path) {
            let target = folder.appendingPathComponent(name)
            guard !fm.fileExists(atPath: target.path) else {
                throw PaliGemmaError.io(path: target.path, reason: "already exists; refusing to overwrite it")
            }
            do { try fm.copyItem(at: source.appendingPathComponent(name), to: target) } catch {
                throw PaliGemmaError.io(path: source.appendingPathComponent(name).path, reason: "cannot copy: \(error.localizedDescription)")
            }
            copied.append(name)
        }
        return copied
    }

    static func writeShard(_ tensors: [(name: String, shape: [Int])], dtype: DType, to url: URL,
                           rng: inout Xoshiro256, locRows: Range<Int>? = nil, sincosPositions: Bool = false, wrote: (Int) -> Void) throws {
        let writer = try SafetensorsStreamWriter(path: url.path, tensors: tensors.map { ($0.name, dtype, $0.shape) },
                                                 metadata: ["format": "pt"])
        let chunk = 1 << 20
        var values = [Float](repeating: 0, count: chunk)
        var bytes = [UInt8](repeating: 0, count: chunk * dtype.size)
        for t in tensors {
            let count = t.shape.reduce(1, *)
            let (scale, offsetValue) = distribution(name: t.name, shape: t.shape)
            var done = 0
            while done < count {
                let n = min(chunk, count - done)
                for j in 0..<n {
                    // uniform in [-1, 1) times sqrt(3) has unit variance
                    let u = Float(Int64(bitPattern: rng.next()) >> 40) / Float(1 << 23)
                    values[j] = offsetValue + scale * 1.7320508 * u
                }
                if let locRows, t.name.hasSuffix("embed_tokens.weight"), let width = t.shape.last {
                    for j in 0..<n {
                        let (row, col) = (done + j).quotientAndRemainder(dividingBy: width)
                        if locRows.contains(row) { values[j] = locEmbedding(row - locRows.lowerBound, column: col, width: width) }
                    }
                }
                if sincosPositions, t.name.hasSuffix("position_embedding.weight"), t.shape.count == 2 {
                    let side = Int(Double(t.shape[0]).squareRoot().rounded()), width = t.shape[1]
                    if side * side == t.shape[0] {
                        for j in 0..<n {
                            let (patch, col) = (done + j).quotientAndRemainder(dividingBy: width)
                            values[j] = gridPosition(row: patch / side, column: patch % side, channel: col, width: width)
                        }
                    }
                }
                try values.withUnsafeBufferPointer { v in
                    try bytes.withUnsafeMutableBytes {
                        if let src = v.baseAddress, let dst = $0.baseAddress { Ops.convertFromFloat(src, to: dtype, into: dst, count: n) }
                        try writer.write(t.name, at: done * dtype.size, UnsafeRawBufferPointer(rebasing: $0[0..<(n * dtype.size)]))
                    }
                }
                done += n
                wrote(n * dtype.size)
            }
        }
        try writer.finish()
    }

    /// Value `column` of the embedding of coordinate `c` (0…1023) for `locRows`: pairs of
    /// columns hold sin and cos of 2πc / P, the periods P geometric from 2048 down to 4, scaled to
    /// the token embedding's standard deviation (0.02). Near coordinates start with near
    /// embeddings, so that a model trained from scratch meets a smooth output head for boxes
    /// instead of 1,024 unrelated rows.
    public static func locEmbedding(_ c: Int, column: Int, width: Int) -> Float {
        let pairs = max(width / 2, 1), i = min(column / 2, pairs - 1)
        let period = 2048 * pow(4.0 / 2048, Double(i) / Double(max(pairs - 1, 1)))
        let angle = 2 * Double.pi * Double(c) / period
        return Float(0.02 * 2.0.squareRoot() * (column % 2 == 0 ? sin(angle) : cos(angle)))
    }

    /// Channel `channel` of the position embedding of the patch at (row, column) of a square grid
    /// (MAE's 2D sin-cos table): the first half of the channels encodes the row, the second the
    /// column, each as sin and cos pairs at frequencies 1/10000^(i/(width/4)), values in [-1, 1].
    /// Patches start with distinct, smoothly varying positions of the same size as their content,
    /// where a random table at 1/sqrt(width) is several times weaker.
    public static func gridPosition(row: Int, column: Int, channel: Int, width: Int) -> Float {
        let half = width / 2, quarter = max(half / 2, 1)
        guard channel < 2 * half else { return 0 }  // an odd width's last channel
        let coordinate = channel < half ? row : column, c = channel % half
        let frequency = pow(10000.0, -Double(c % quarter) / Double(quarter))
        let angle = Double(coordinate) * frequency
        return Float(c < quarter ? sin(angle) : cos(angle))
    }

    /// (standard deviation, mean) of a parameter's random values.
    static func distribution(name: String, shape: [Int]) -> (Float, Float) {
        if name.hasSuffix("embed_tokens.weight") { return (0.02, 0) }
        // SigLIP's own initialisation (transformers' SiglipPreTrainedModel): 1/sqrt(width), so
        // that a model trained from these values sees where a patch is from the start (at 0.02
        // the position is ~40 times weaker than the patch's content).
        if name.contains("position_embedding"), let width = shape.last { return (1 / Float(width).squareRoot(), 0) }
        if shape.count == 1 {
            let layerNormScale = name.contains("vision_tower") && name.contains("norm") && name.hasSuffix(".weight")
            return (0, layerNormScale ? 1 : 0)
        }
        let fanIn = shape.dropFirst().reduce(1, *)
        return (1 / Float(fanIn).squareRoot(), 0)
    }
}
