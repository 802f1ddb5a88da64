import Foundation
import PaliGemma

/// The model shipped in the repository (Models/shapes-tiny: a tiny PaliGemma trained here on the
/// synthetic shapes world; its card is Models/shapes-tiny/README.md), used by every command whose --model is left out.
enum BundledModel {
    static let folderName = "shapes-tiny"

    /// Where it is looked for, in order: $PALIGEMMA_DEFAULT_MODEL; beside the executable
    /// (`paligemma-models/shapes-tiny`, `../share/paligemma/shapes-tiny`, for an installed copy);
    /// the source tree the executable was built from (`Models/shapes-tiny`, found through this
    /// file's compile-time path, so any build folder of a checkout finds it).
    static func candidates(environment: [String: String] = ProcessInfo.processInfo.environment) -> [URL] {
        var out: [URL] = []
        if let path = environment["PALIGEMMA_DEFAULT_MODEL"], !path.isEmpty {
            out.append(expandedURL(path))
        }
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        let binDir = executable.deletingLastPathComponent()
        out.append(binDir.appendingPathComponent("paligemma-models").appendingPathComponent(folderName))
        out.append(binDir.deletingLastPathComponent().appendingPathComponent("share/paligemma").appendingPathComponent(folderName))
        let sourceRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        out.append(sourceRoot.appendingPathComponent("Models").appendingPathComponent(folderName))
        return out
    }

    /// The first candidate holding a config.json; a typed error listing every place looked at.
    static func locate(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> URL {
        let places = candidates(environment: environment)
        for place in places where FileManager.default.fileExists(atPath: place.appendingPathComponent("config.json").path) {
            return place.standardizedFileURL
        }
        throw PaliGemmaError.io(path: folderName, reason: "no --model given and the bundled model was not found; looked in "
                                + places.map(\.path).joined(separator: ", ") + "; pass --model FOLDER")
    }
}

/// `--model`'s folder: the argument located as a folder or cached hub id, or, when it is left
/// out, the bundled model, announced in one line on stderr.
func modelURL(_ argument: String?) throws -> URL {
    guard let argument else {
        let url = try BundledModel.locate()
        FileHandle.standardError.write(Data("paligemma: no --model given; using the bundled shapes model (\(url.path)), which knows only the synthetic shapes world\n".utf8))
        return url
    }
    return try ModelLocator.locate(argument)
}
