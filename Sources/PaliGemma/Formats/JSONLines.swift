import Foundation

/// The lines of a JSON Lines file, read in chunks so that a line longer than the limit is
/// refused when the limit is passed, before the rest of it is read or held (a 1 GB line costs
/// 1 MiB of memory to refuse, not 1 GB). Lines end at "\n"; a "\r" before it and a UTF-8 byte
/// order mark at the start of the file are dropped. Line numbers count from 1, blank lines
/// included.
public struct JSONLines {
    /// The longest line accepted by default: training and batch lines hold a path and some text.
    public static let defaultMaxLineBytes = 1 << 20

    public let path: String
    public let maxLineBytes: Int
    private var pending: [UInt8] = []
    private var number = 0

    public init(path: String, maxLineBytes: Int = JSONLines.defaultMaxLineBytes) {
        self.path = path
        self.maxLineBytes = maxLineBytes
    }

    /// Every line of the file at `url`, passed to `body` with its number.
    public static func forEachLine(of url: URL, maxLineBytes: Int = defaultMaxLineBytes,
                                   _ body: (Int, [UInt8]) throws -> Void) throws {
        let handle: FileHandle
        do { handle = try FileHandle(forReadingFrom: url) } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot read: \(error.localizedDescription)")
        }
        defer { try? handle.close() }
        var lines = JSONLines(path: url.path, maxLineBytes: maxLineBytes)
        while true {
            let chunk: Data?
            do { chunk = try handle.read(upToCount: 1 << 20) } catch {
                throw PaliGemmaError.io(path: url.path, reason: "cannot read: \(error.localizedDescription)")
            }
            guard let chunk, !chunk.isEmpty else { break }
            try lines.feed([UInt8](chunk), body)
        }
        try lines.finish(body)
    }

    /// Every line of a file held in memory.
    public static func forEachLine(of bytes: [UInt8], path: String, maxLineBytes: Int = defaultMaxLineBytes,
                                   _ body: (Int, [UInt8]) throws -> Void) throws {
        var lines = JSONLines(path: path, maxLineBytes: maxLineBytes)
        try lines.feed(bytes, body)
        try lines.finish(body)
    }

    /// The next bytes of the file; complete lines go to `body`.
    public mutating func feed(_ chunk: [UInt8], _ body: (Int, [UInt8]) throws -> Void) throws {
        var i = 0
        while let newline = chunk[i...].firstIndex(of: 0x0A) {
            try append(chunk[i..<newline])
            try emit(body)
            i = newline + 1
        }
        try append(chunk[i...])
    }

    /// The end of the file: the last line, if it has no "\n", goes to `body`.
    public mutating func finish(_ body: (Int, [UInt8]) throws -> Void) throws {
        if !pending.isEmpty { try emit(body) }
    }

    private mutating func append(_ bytes: ArraySlice<UInt8>) throws {
        // + 3 + 1: a byte order mark and the "\r" of "\r\n", dropped before the exact check.
        guard pending.count + bytes.count <= maxLineBytes + 4 else { throw tooLong() }
        pending.append(contentsOf: bytes)
    }

    private func tooLong() -> PaliGemmaError {
        .input("\(path), line \(number + 1): longer than \(maxLineBytes) bytes, the limit for one line (is this a JSON Lines file?)")
    }

    private mutating func emit(_ body: (Int, [UInt8]) throws -> Void) throws {
        if pending.last == 0x0D { pending.removeLast() }
        if number == 0, pending.starts(with: [0xEF, 0xBB, 0xBF]) { pending.removeFirst(3) }
        guard pending.count <= maxLineBytes else { throw tooLong() }
        number += 1
        let line = pending
        pending.removeAll(keepingCapacity: true)
        try body(number, line)
    }
}
