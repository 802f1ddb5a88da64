import Foundation
import Testing
@testable import PaliGemma

/// The .npy/.npz reader against files written by numpy (scripts/make_mask_fixtures.py).
@Suite struct NPZTests {
    static func fixture(_ name: String) -> String { Fixtures.root.appendingPathComponent("masks/\(name)").path }
    /// np.arange(24).reshape(2, 3, 4) * 0.5 - 3, the arrays the generator writes in many forms.
    static let base: [Float] = (0..<24).map { Float($0) * 0.5 - 3 }

    @Test func readsEveryLayoutNumpyWrites() throws {
        let archive = try NPZArchive(path: Self.fixture("arrays.npz"))
        #expect(archive.names == ["c_order", "fortran", "half", "big_endian", "half_fortran_be", "scalar",
                                  "empty", "v2", "v3", "int64", "float64"])  // readme.txt is not an array
        for name in ["c_order", "fortran", "v2", "v3"] {
            let a = try archive.array(name)
            #expect(a.shape == [2, 3, 4], "\(name)")
            #expect(a.values == Self.base, "\(name)")
            #expect(a.storedDType == .float32)
        }
        let half = try archive.array("half")
        #expect(half.shape == [5])
        #expect(half.values == [0, 0.25, 0.5, 0.75, 1])
        #expect(half.storedDType == .float16)
        // base[0].T as big-endian float32: [4, 3], element (i, j) = base[0][j][i].
        let be = try archive.array("big_endian")
        #expect(be.shape == [4, 3])
        let transposed: [Float] = (0..<12).map { (n: Int) -> Float in Self.base[(n % 3) * 4 + n / 3] }
        #expect(be.values == transposed)
        // base[1] as big-endian float16 in Fortran order.
        let hf = try archive.array("half_fortran_be")
        #expect(hf.shape == [3, 4])
        #expect(hf.values == Array(Self.base[12..<24]))
        #expect(hf.storedDType == .float16)
        let scalar = try archive.array("scalar")
        #expect(scalar.shape == [])
        #expect(scalar.values == [2.5])
        let empty = try archive.array("empty")
        #expect(empty.shape == [0, 3])
        #expect(empty.values.isEmpty)
    }

    @Test func readsNumpySavez() throws {
        let arrays = try NPZArchive(path: Self.fixture("savez_stored.npz")).arrays()
        #expect(arrays["a"]?.values == Self.base)
        #expect(arrays["a"]?.shape == [2, 3, 4])
        #expect(arrays["b"]?.values == [1, 2, 3])
    }

    @Test func rejectsUnsupportedDTypesByName() throws {
        let archive = try NPZArchive(path: Self.fixture("arrays.npz"))
        for (name, descr) in [("int64", "<i8"), ("float64", "<f8")] {
            let error = #expect(throws: PaliGemmaError.self) { try archive.array(name) }
            let text = error.map { "\($0)" } ?? ""
            let expected = "\(name).npy': dtype '\(descr)' is not supported"
            #expect(text.contains(expected), "\(text)")
        }
        #expect(throws: PaliGemmaError.npz(path: Self.fixture("arrays.npz"), member: "nope.npy",
                                           reason: "no such array in the archive")) { try archive.array("nope") }
    }

    @Test func detectsCorruptionAndTruncation() throws {
        let path = Self.fixture("arrays.npz")
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        // A flipped byte inside the stored member c_order.npy: its CRC no longer matches.
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]
        let start = try #require((0..<(bytes.count - 6)).first { Array(bytes[$0..<($0 + 6)]) == magic })
        var flipped = bytes
        flipped[start + 128 + 5] ^= 0x40
        let archive = try NPZArchive(bytes: flipped, path: "flipped.npz")
        let crcError = #expect(throws: PaliGemmaError.self) { try archive.array("c_order") }
        #expect("\(crcError.map { "\($0)" } ?? "")".contains("CRC-32 mismatch"))
        #expect(try archive.array("fortran").values == Self.base)  // other members unaffected

        // Truncated archives lose the end-of-central-directory record.
        for cut in [bytes.count - 10, bytes.count / 2, 21, 0] {
            let error = #expect(throws: PaliGemmaError.self) { try NPZArchive(bytes: Array(bytes[0..<cut]), path: "cut.npz") }
            #expect("\(error.map { "\($0)" } ?? "")".contains("cut.npz"))
        }
        // Not an archive at all.
        #expect(throws: PaliGemmaError.self) { try NPZArchive(bytes: Array(repeating: 7, count: 4096), path: "x.npz") }
        let missing = #expect(throws: PaliGemmaError.self) { try NPZArchive(path: "/nonexistent/vae-oid.npz") }
        guard case let .io(missingPath, _)? = missing else { Issue.record("expected an io error, got \(String(describing: missing))"); return }
        #expect(missingPath == "/nonexistent/vae-oid.npz")
    }

    @Test func rejectsMalformedNpy() throws {
        func npy(_ header: String, data: [UInt8] = [], version: UInt8 = 1) -> [UInt8] {
            let h = Array(header.utf8)
            var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
            out += version == 1 ? [UInt8(h.count & 0xFF), UInt8(h.count >> 8)] : [UInt8(h.count & 0xFF), UInt8(h.count >> 8), 0, 0]
            return out + h + data
        }
        let ok = npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", data: [0, 0, 128, 63, 0, 0, 0, 64])
        #expect(try NPY.parse(ok, path: "ok.npy").values == [1, 2])
        let cases: [([UInt8], String)] = [
            (Array(ok.dropLast()), "needs 8 data bytes, found 7 (truncated?)"),
            (ok + [0], "found 9"),
            (Array("not numpy at all".utf8), "magic"),
            (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", version: 4), "version 4.0"),
            (npy("{'descr': '<f4', 'fortran_order': False}"), "lacks"),
            (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}"), "unexpected header entry 'extra'"),
            (npy("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}"), "structured dtypes are not supported"),
            (npy("{'descr': '|O', 'fortran_order': False, 'shape': (2,)}"), "dtype '|O' is not supported"),
            (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (2,"), "not a Python dict"),
            (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}"), "negative dimension"),
            (npy("{'descr': '<f4', 'fortran_order': False, 'shape': (4611686018427387904, 4)}"), "too large"),
        ]
        for (bytes, expected) in cases {
            let error = #expect(throws: PaliGemmaError.self) { try NPY.parse(bytes, path: "bad.npy") }
            let text = error.map { "\($0)" } ?? ""
            #expect(text.contains(expected), "\(text)")
            #expect(text.hasPrefix("bad.npy: "))
        }
    }

    @Test func fortranReorderingMatchesIndexArithmetic() {
        // A [2, 3, 4] array stored column-major: element (i, j, k) sits at i + 2*j + 6*k.
        let stored = (0..<24).map(Float.init)
        let c = NPY.fortranToC(stored, shape: [2, 3, 4])
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 {
            #expect(c[i * 12 + j * 4 + k] == Float(i + 2 * j + 6 * k))
        } } }
    }
}

/// ZIP64 records that numpy's small files never need (huge archives), built by hand.
@Suite struct NPZZip64Tests {
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    static func le(_ v: UInt64, _ n: Int) -> [UInt8] { (0..<n).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }

    /// One stored member whose sizes and offset live only in ZIP64 extra fields, with a
    /// ZIP64 end-of-central-directory record and locator.
    static func zip64Archive(name: String, data: [UInt8]) -> [UInt8] {
        let n = Array(name.utf8), size = UInt64(data.count), crc = UInt64(crc32(data))
        let sat32 = le(0xFFFF_FFFF, 4)
        var out = le(0x0403_4B50, 4) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(crc, 4) + sat32 + sat32
        out += le(UInt64(n.count), 2) + le(20, 2) + n + le(1, 2) + le(16, 2) + le(size, 8) + le(size, 8) + data
        let directoryOffset = UInt64(out.count)
        out += le(0x0201_4B50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(crc, 4) + sat32 + sat32
        out += le(UInt64(n.count), 2) + le(28, 2) + le(0, 2) + le(0, 2) + le(0, 2) + le(0, 4) + sat32 + n
        out += le(1, 2) + le(24, 2) + le(size, 8) + le(size, 8) + le(0, 8)
        let directorySize = UInt64(out.count) - directoryOffset
        let record = UInt64(out.count)
        out += le(0x0606_4B50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) + le(1, 8) + le(1, 8)
        out += le(directorySize, 8) + le(directoryOffset, 8)
        out += le(0x0706_4B50, 4) + le(0, 4) + le(record, 8) + le(1, 4)
        out += le(0x0605_4B50, 4) + le(0, 2) + le(0, 2) + le(0xFFFF, 2) + le(0xFFFF, 2) + sat32 + sat32 + le(0, 2)
        return out
    }

    @Test func readsZip64Records() throws {
        let header = Array("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }".utf8)
        let npy: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(header.count), 0] + header
            + [0, 0, 128, 63, 0, 0, 0, 64, 0, 0, 64, 64]  // 1, 2, 3
        #expect(Self.crc32(Array("123456789".utf8)) == 0xCBF4_3926)  // the CRC-32 check value
        let archive = try NPZArchive(bytes: Self.zip64Archive(name: "w.npy", data: npy), path: "z64.npz")
        #expect(archive.names == ["w"])
        #expect(try archive.array("w").values == [1, 2, 3])
    }
}
