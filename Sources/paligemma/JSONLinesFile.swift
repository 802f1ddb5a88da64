import Foundation
import PaliGemma
import PaliGemmaJSON

/// A JSON Lines file written one object per line through `JSONOutput` (batch results, the
/// training log, evaluation predictions).
final class JSONLinesFile {
    let handle: FileHandle

    /// With `append`, what the file holds is kept and lines go after it (on a fresh line if a
    /// previous run was cut off mid-line); otherwise the file starts empty.
    init(path: String, append: Bool) throws {
        let fm = FileManager.default
        if !append || !fm.fileExists(atPath: path) {
            guard fm.createFile(atPath: path, contents: nil) else {
                throw PaliGemmaError.io(path: path, reason: "cannot create the file")
            }
        }
        guard let h = FileHandle(forWritingAtPath: path) else {
            throw PaliGemmaError.io(path: path, reason: "cannot open the file for writing")
        }
        handle = h
        handle.seekToEndOfFile()
        if handle.offsetInFile > 0, let last = try? Data(contentsOf: URL(fileURLWithPath: path)).last, last != 0x0A {
            handle.write(Data("\n".utf8))
        }
    }

    func write<T: Encodable>(_ line: T) throws {
        handle.write(Data((try JSONOutput.string(line) + "\n").utf8))
    }
}
