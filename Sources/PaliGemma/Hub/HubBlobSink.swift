import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

private func systemWrite(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int { write(fd, p, n) }
private func systemClose(_ fd: Int32) { _ = close(fd) }

/// Appends a response body to `blobs/<etag>.incomplete`, hashing as it goes. Opening it hashes
/// what an earlier run left, so that a resumed file is verified whole.
final class BlobSink: HubBodySink, @unchecked Sendable {
    let url: URL
    /// Bytes on disk (and hashed).
    private(set) var length: Int64 = 0
    private(set) var hasher = SHA256()
    /// Where the next response must start (the `Range` sent), checked against `Content-Range`.
    var expectedStart: Int64 = 0
    private let limit: Int64?
    private let onProgress: @Sendable (Int64) -> Void
    private var fd: Int32

    init(url: URL, limit: Int64?, onProgress: @escaping @Sendable (Int64) -> Void) throws {
        self.url = url
        self.limit = limit
        self.onProgress = onProgress
        try? FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw Self.error(url, "cannot open for writing") }
        try hashExisting()
    }

    private static func error(_ url: URL, _ what: String) -> PaliGemmaError {
        .hub(.cache(path: url.path, reason: "\(what): \(String(cString: strerror(errno)))"))
    }

    private func hashExisting() throws {
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        guard lseek(fd, 0, SEEK_SET) == 0 else { throw Self.error(url, "cannot seek") }
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 { throw Self.error(url, "cannot read partial download") }
            if n == 0 { break }
            buffer.withUnsafeBytes { hasher.update(UnsafeRawBufferPointer(rebasing: $0.prefix(n))) }
            length += Int64(n)
        }
    }

    /// Empties the file to restart from byte 0.
    func truncate() throws {
        guard ftruncate(fd, 0) == 0, lseek(fd, 0, SEEK_SET) == 0 else { throw Self.error(url, "cannot truncate") }
        length = 0
        hasher = SHA256()
    }

    func begin(_ response: HubHTTPResponse) throws {
        if response.status == 206 {
            // Content-Range: bytes START-END/TOTAL
            let range = response.header("content-range") ?? ""
            let start = range.split(separator: " ").last?.split(separator: "-").first.flatMap { Int64($0) }
            guard start == expectedStart else {
                throw PaliGemmaError.hub(.protocolViolation(url: response.url.absoluteString,
                    reason: "asked for bytes from \(expectedStart), got Content-Range '\(range)'"))
            }
        } else if expectedStart > 0 {
            try truncate()          // the server ignored Range and sends the whole file
        }
        guard lseek(fd, off_t(length), SEEK_SET) >= 0 else { throw Self.error(url, "cannot seek") }
    }

    func write(_ data: Data) throws {
        if let limit, length + Int64(data.count) > limit {
            throw PaliGemmaError.hub(.protocolViolation(url: url.lastPathComponent,
                reason: "the server sent more than the expected \(limit) bytes"))
        }
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count, let base = raw.baseAddress {
                let n = systemWrite(fd, base + offset, raw.count - offset)
                if n < 0 && errno == EINTR { continue }
                guard n > 0 else { throw Self.error(url, "cannot write") }
                offset += n
            }
            hasher.update(raw)
        }
        length += Int64(data.count)
        onProgress(length)
    }

    func sync() throws {
        guard fsync(fd) == 0 else { throw Self.error(url, "cannot sync") }
    }

    func close() {
        if fd >= 0 { systemClose(fd); fd = -1 }
    }

    deinit { close() }
}
