import Foundation
import PaliGemma

// The output stage of `detect` / `segment` and the whole of `parse`: find and load the mask
// decoder when the answer has <seg> tokens, parse the answer into boxes (and masks), write the
// requested PNGs, and collect what to tell the user on stderr. The pieces (checkpoint search,
// parsing, PNG writers) are the library's; this file only strings them together for the CLI.

/// Inputs of `paligemma parse` (and the task-output options of detect / segment).
struct TaskOutputRequest {
    var text: String
    var imageWidth: Int
    var imageHeight: Int
    /// --vae FILE (must exist when given).
    var vaePath: String?
    /// The model folder, to look for vae-oid.npz beside it.
    var modelDirectory: String?
    /// --masks DIR: write each decoded mask as a PNG there.
    var maskDirectory: String?
    /// --overlay FILE: write boxes, labels and masks drawn over `image` (or a blank canvas).
    var overlayPath: String?
    /// The image the answer is about (for the overlay); must be imageWidth x imageHeight.
    var image: RGBImage?
}

/// What the output stage did.
struct TaskOutputResponse {
    /// For stderr: e.g. the missing-checkpoint hint, skipped pieces.
    let notes: [String]
    /// PNG files written.
    let files: [String]
    let result: TaskResult
}

extension TaskOutputRequest {
    /// Loads the mask decoder only when the text has `<seg>` tokens (a missing checkpoint is a
    /// note, not an error, unless --vae names a missing file), parses, writes the requested PNGs.
    func run() throws -> TaskOutputResponse {
        var notes: [String] = []
        var decoder: MaskDecoder?
        let mentionsSegments = TaskOutput.mentionsSegments(text)
        if mentionsSegments || vaePath != nil {
            let location = try MaskDecoder.locateCheckpoint(explicit: vaePath, modelDirectory: modelDirectory)
            if let path = location.path {
                decoder = try MaskDecoder(path: path)
            } else if mentionsSegments {
                notes.append("no mask decoder checkpoint (looked in: \(location.searched.joined(separator: ", "))). "
                             + MaskDecoder.missingCheckpointHint)
            }
        }
        let result = try TaskOutput.parse(text: text, imageWidth: imageWidth, imageHeight: imageHeight, maskDecoder: decoder)
        var files: [String] = []
        if let maskDirectory {
            files += try result.writeMaskPNGs(directory: maskDirectory)
            if result.segments.isEmpty { notes.append("no segments, so no mask PNGs were written") }
        }
        if let overlayPath {
            try result.writeOverlayPNG(to: overlayPath, on: image)
            files.append(overlayPath)
        }
        for s in result.skipped { notes.append("skipped \"\(s.text)\": \(s.reason)") }
        return TaskOutputResponse(notes: notes, files: files, result: result)
    }
}

extension TaskOutputResponse {
    /// Writes the notes to stderr, one line each.
    func printNotes() {
        for note in notes { FileHandle.standardError.write(Data("paligemma: note: \(note)\n".utf8)) }
    }
}
