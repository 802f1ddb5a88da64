import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A folder written under a hidden temporary name beside its destination and renamed into place
/// only when complete (`commit()`), so a reader never sees half of it; dropped without
/// `commit()`, the temporary folder is removed. Used for checkpoint folders (quantized, merged)
/// and adapter folders.
///
/// The destination must not exist, or be an empty folder; with `overwrite`, an existing folder
/// is replaced (moved aside at commit, then removed). It may not be, or lie inside, `source`
/// (the folder being read).
final class StagedFolder {
    let destination: URL
    /// Where the files go until `commit()`.
    let temporary: URL
    private let overwrite: Bool
    private var committed = false

    init(destination: URL, source: URL? = nil, overwrite: Bool = false) throws {
        self.destination = destination.standardizedFileURL
        self.overwrite = overwrite
        try Self.checkDestination(self.destination, source: source, overwrite: overwrite)
        let fm = FileManager.default
        let parent = self.destination.deletingLastPathComponent()
        do {
            try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        } catch {
            throw PaliGemmaError.io(path: parent.path, reason: "cannot create: \(error.localizedDescription)")
        }
        temporary = parent.appendingPathComponent(".\(self.destination.lastPathComponent).partial-\(UUID().uuidString.prefix(8))")
        do {
            try fm.createDirectory(at: temporary, withIntermediateDirectories: false)
        } catch {
            throw PaliGemmaError.io(path: temporary.path, reason: "cannot create: \(error.localizedDescription)")
        }
    }

    deinit { if !committed { try? FileManager.default.removeItem(at: temporary) } }

    /// A file of the folder being written.
    func file(_ name: String) -> URL { temporary.appendingPathComponent(name) }

    /// Moves the finished folder into place (replacing the old one when overwriting). On Linux an
    /// old folder is swapped with the new one in one step (renameat2 with RENAME_EXCHANGE), so
    /// a process killed at any moment leaves the old folder or the new one at the destination;
    /// elsewhere, or where the file system cannot swap, the old folder is moved aside first.
    func commit() throws {
        let fm = FileManager.default
        var aside: URL?
        if overwrite, let contents = try? fm.contentsOfDirectory(atPath: destination.path), !contents.isEmpty {
            if Self.exchange(temporary.path, destination.path) {
                committed = true
                try? fm.removeItem(at: temporary)  // now the old folder
                return
            }
            let old = destination.deletingLastPathComponent()
                .appendingPathComponent(".\(destination.lastPathComponent).old-\(UUID().uuidString.prefix(8))")
            guard rename(destination.path, old.path) == 0 else {
                throw PaliGemmaError.io(path: destination.path, reason: "cannot move the old folder aside: \(String(cString: strerror(errno)))")
            }
            aside = old
        }
        guard rename(temporary.path, destination.path) == 0 else {
            let reason = String(cString: strerror(errno))
            if let aside { _ = rename(aside.path, destination.path) }
            throw PaliGemmaError.io(path: destination.path, reason: "cannot move the finished folder into place: \(reason)")
        }
        committed = true
        if let aside { try? fm.removeItem(at: aside) }
    }

    /// Swaps two paths atomically (Linux's renameat2 with RENAME_EXCHANGE, looked up at run time
    /// because Glibc's Swift module does not declare it); false where that is not possible.
    static func exchange(_ a: String, _ b: String) -> Bool {
        #if os(Linux)
        typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else { return false }
        let renameat2 = unsafeBitCast(symbol, to: RenameAt2.self)
        let renameExchange: UInt32 = 2  // RENAME_EXCHANGE, linux/fs.h
        return renameat2(AT_FDCWD, a, AT_FDCWD, b, renameExchange) == 0
        #else
        return false
        #endif
    }

    /// Refuses a destination that exists and is not a folder, or is a non-empty folder (unless
    /// `overwrite`), or is (or lies inside) `source`.
    static func checkDestination(_ destination: URL, source: URL?, overwrite: Bool) throws {
        let fm = FileManager.default
        if let source {
            let (out, input) = (resolvedPath(destination), resolvedPath(source))
            if out == input || out.hasPrefix(input.hasSuffix("/") ? input : input + "/") {
                throw PaliGemmaError.io(path: destination.path,
                    reason: "is the checkpoint folder being read or lies inside it (\(source.path)); choose another output folder")
            }
        }
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: destination.path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else {
                throw PaliGemmaError.io(path: destination.path, reason: "exists and is not a folder; refusing to overwrite it")
            }
            let contents = (try? fm.contentsOfDirectory(atPath: destination.path)) ?? ["?"]
            guard contents.isEmpty || overwrite else {
                throw PaliGemmaError.io(path: destination.path, reason: "exists and is not empty; refusing to overwrite it")
            }
        }
    }

    /// The path with symbolic links resolved as far as it exists.
    static func resolvedPath(_ url: URL) -> String {
        var existing = url.standardizedFileURL.path
        var rest: [String] = []
        while !FileManager.default.fileExists(atPath: existing), existing != "/", !existing.isEmpty {
            rest.insert((existing as NSString).lastPathComponent, at: 0)
            existing = (existing as NSString).deletingLastPathComponent
        }
        var base = existing
        if let real = realpath(existing, nil) {
            base = String(cString: real)
            free(real)
        }
        return rest.reduce(base) { ($0 as NSString).appendingPathComponent($1) }
    }
}
