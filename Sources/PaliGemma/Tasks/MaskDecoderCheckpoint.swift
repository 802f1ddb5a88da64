import Foundation

// The logic behind `paligemma parse` (and the output stage of `detect` / `segment`), so
// that the command-line front end is a thin wrapper: find the mask decoder checkpoint,
// parse, render text or JSON, write the optional PNGs.

extension MaskDecoder {
    /// Where the checkpoint was looked for, in order, and the first that exists.
    public struct Location: Sendable, Equatable {
        public let path: String?
        public let searched: [String]
    }

    /// Finds `vae-oid.npz`: `explicit` (must exist), else $PALIGEMMA_VAE, the model folder,
    /// its parent, $XDG_CACHE_HOME/paligemma (default ~/.cache/paligemma).
    public static func locateCheckpoint(explicit: String?, modelDirectory: String?,
                                        environment: [String: String] = ProcessInfo.processInfo.environment) throws -> Location {
        let fm = FileManager.default
        if let explicit {
            guard fm.fileExists(atPath: explicit) else {
                throw PaliGemmaError.io(path: explicit, reason: "mask decoder checkpoint not found. " + missingCheckpointHint)
            }
            return Location(path: explicit, searched: [explicit])
        }
        var candidates: [String] = []
        if let env = environment["PALIGEMMA_VAE"], !env.isEmpty { candidates.append(env) }
        if let modelDirectory {
            let model = URL(fileURLWithPath: modelDirectory)
            candidates.append(model.appendingPathComponent(checkpointName).path)
            candidates.append(model.deletingLastPathComponent().appendingPathComponent(checkpointName).path)
        }
        let cacheRoot = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? environment["HOME"].map { $0 + "/.cache" }
        if let cacheRoot { candidates.append(cacheRoot + "/paligemma/" + checkpointName) }
        return Location(path: candidates.first { fm.fileExists(atPath: $0) }, searched: candidates)
    }
}

/// Inputs of `paligemma parse` (and the task-output options of detect / segment).
public struct TaskOutputRequest: Sendable {
    public var text: String
    public var imageWidth: Int
    public var imageHeight: Int
    /// --vae FILE (must exist when given).
    public var vaePath: String?
    /// The model folder, to look for vae-oid.npz beside it.
    public var modelDirectory: String?
    /// --json: print JSON instead of the summary.
    public var json: Bool
    /// --masks DIR: write each decoded mask as a PNG there.
    public var maskDirectory: String?
    /// --overlay FILE: write boxes, labels and masks drawn over `image` (or a blank canvas).
    public var overlayPath: String?
    /// The image the answer is about (for the overlay); must be imageWidth x imageHeight.
    public var image: RGBImage?

    public init(text: String, imageWidth: Int, imageHeight: Int, vaePath: String? = nil, modelDirectory: String? = nil,
                json: Bool = false, maskDirectory: String? = nil, overlayPath: String? = nil, image: RGBImage? = nil) {
        self.text = text
        self.imageWidth = imageWidth
        self.imageHeight = imageHeight
        self.vaePath = vaePath
        self.modelDirectory = modelDirectory
        self.json = json
        self.maskDirectory = maskDirectory
        self.overlayPath = overlayPath
        self.image = image
    }
}

/// What the command prints and did.
public struct TaskOutputResponse: Sendable {
    /// For stdout: the JSON object or the summary.
    public let output: String
    /// For stderr: e.g. the missing-checkpoint hint.
    public let notes: [String]
    /// PNG files written.
    public let files: [String]
    public let result: TaskResult
}

extension TaskOutput {
    /// The whole `parse` command: loads the mask decoder only when the text has `<seg>`
    /// tokens (a missing checkpoint is a note, not an error, unless --vae names a missing
    /// file), parses, renders, writes the requested PNGs.
    public static func run(_ request: TaskOutputRequest) throws -> TaskOutputResponse {
        var notes: [String] = []
        var decoder: MaskDecoder?
        if mentionsSegments(request.text) || request.vaePath != nil {
            let location = try MaskDecoder.locateCheckpoint(explicit: request.vaePath, modelDirectory: request.modelDirectory)
            if let path = location.path {
                decoder = try MaskDecoder(path: path)
            } else if mentionsSegments(request.text) {
                notes.append("no mask decoder checkpoint (looked in: \(location.searched.joined(separator: ", "))). "
                             + MaskDecoder.missingCheckpointHint)
            }
        }
        let result = try parse(text: request.text, imageWidth: request.imageWidth, imageHeight: request.imageHeight,
                               maskDecoder: decoder)
        var files: [String] = []
        if let directory = request.maskDirectory {
            files += try result.writeMaskPNGs(directory: directory)
            if result.segments.isEmpty { notes.append("no segments, so no mask PNGs were written") }
        }
        if let overlay = request.overlayPath {
            try result.writeOverlayPNG(to: overlay, on: request.image)
            files.append(overlay)
        }
        for s in result.skipped { notes.append("skipped \"\(s.text)\": \(s.reason)") }
        return TaskOutputResponse(output: request.json ? result.json() : result.summary(), notes: notes,
                                  files: files, result: result)
    }
}

// MARK: - Benchmark

extension MaskDecoder {
    /// Timing of `decode` (codes -> 64x64) and of the placement into an image.
    public struct BenchmarkResult: Sendable, Equatable {
        public let iterations: Int
        public let decodeMedianMs: Double
        public let decodeMinMs: Double
        public let placeMedianMs: Double
        public let threads: Int
    }

    /// Decodes `iterations` pseudo-random code sets (after one warm-up) and places each mask
    /// into a `placeWidth` x `placeHeight` image covering most of it.
    public func benchmark(iterations: Int = 50, placeWidth: Int = 640, placeHeight: Int = 480) throws -> BenchmarkResult {
        let n = max(1, iterations)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func codes() -> [Int] {
            (0..<Self.codesPerMask).map { _ in
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                return Int(state >> 57)  // 0...127
            }
        }
        _ = try decode(codes: codes())
        let clock = ContinuousClock()
        var decodeTimes: [Double] = [], placeTimes: [Double] = []
        for _ in 0..<n {
            let c = codes()
            var mask: [Float] = []
            let d = try clock.measure { mask = try decode(codes: c) }
            let p = try clock.measure {
                _ = try MaskPlacement.place(mask64: mask, locs: [50, 60, 980, 990], imageWidth: placeWidth, imageHeight: placeHeight)
            }
            decodeTimes.append(Self.milliseconds(d))
            placeTimes.append(Self.milliseconds(p))
        }
        decodeTimes.sort()
        placeTimes.sort()
        return BenchmarkResult(iterations: n, decodeMedianMs: decodeTimes[n / 2], decodeMinMs: decodeTimes[0],
                               placeMedianMs: placeTimes[n / 2], threads: Kernels.threads)
    }

    static func milliseconds(_ d: Duration) -> Double {
        Double(d.components.seconds) * 1000 + Double(d.components.attoseconds) / 1e15
    }
}
