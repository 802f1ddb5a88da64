import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Bytes a tensor points into: a read-only memory-mapped file, or memory this process owns.
/// Immutable once created, so it can be shared between threads.
public final class Storage: @unchecked Sendable {
    public let base: UnsafeRawPointer
    public let byteCount: Int
    /// Whether the bytes are a mapped file (as opposed to owned memory).
    public let isMapped: Bool
    private let release: () -> Void

    private init(base: UnsafeRawPointer, byteCount: Int, isMapped: Bool = false, release: @escaping () -> Void) {
        self.base = base
        self.byteCount = byteCount
        self.isMapped = isMapped
        self.release = release
    }

    deinit { release() }

    /// Maps a whole file read-only. The mapping lives as long as this object.
    public static func map(path: String) throws -> Storage {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw PaliGemmaError.io(path: path, reason: "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw PaliGemmaError.io(path: path, reason: "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else {
            throw PaliGemmaError.io(path: path, reason: "not a regular file")
        }
        let size = Int(st.st_size)
        if size == 0 {
            let empty = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 64)
            return Storage(base: UnsafeRawPointer(empty), byteCount: 0) { empty.deallocate() }
        }
        guard let ptr = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), ptr != MAP_FAILED else {
            throw PaliGemmaError.io(path: path, reason: "cannot map: \(String(cString: strerror(errno)))")
        }
        return Storage(base: UnsafeRawPointer(ptr), byteCount: size, isMapped: true) { munmap(ptr, size) }
    }

    /// Tells the system the mapped bytes [offset, offset + count) will not be read again, so
    /// their pages can leave this process's resident set (they stay in the file's page cache).
    /// Only whole pages inside the range are released; a no-op for owned memory.
    public func releasePages(offset: Int, count: Int) {
        guard isMapped else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (offset + page - 1) / page * page
        let end = (offset + count) / page * page
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(mutating: base + start), end - start, MADV_DONTNEED)
    }

    /// Owned, 64-byte aligned, zero-filled memory.
    public static func allocate(byteCount: Int) -> Storage {
        let n = max(byteCount, 1)
        let ptr = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        ptr.initializeMemory(as: UInt8.self, repeating: 0, count: n)
        return Storage(base: UnsafeRawPointer(ptr), byteCount: byteCount) { ptr.deallocate() }
    }

    /// Owned copy of `bytes`.
    public static func copying(_ bytes: UnsafeRawBufferPointer) -> Storage {
        let s = allocate(byteCount: bytes.count)
        if let src = bytes.baseAddress, bytes.count > 0 {
            UnsafeMutableRawPointer(mutating: s.base).copyMemory(from: src, byteCount: bytes.count)
        }
        return s
    }
}
