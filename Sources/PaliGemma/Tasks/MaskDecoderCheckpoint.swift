import Foundation

// Where the mask decoder checkpoint (big_vision's vae-oid.npz) is looked for, so that every
// front end (the command line, later the server) finds it the same way.

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
