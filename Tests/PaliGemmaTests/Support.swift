import Foundation
import Testing
@testable import PaliGemma

enum Fixtures {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func model(_ name: String) -> URL { root.appendingPathComponent("models/\(name)") }
    static func reference(_ name: String) throws -> SafetensorsFile {
        try SafetensorsFile(path: root.appendingPathComponent("reference/\(name).safetensors").path)
    }
}

/// Largest |a - b|, and where.
func maxAbsDiff(_ a: [Float], _ b: [Float]) -> (diff: Float, index: Int) {
    precondition(a.count == b.count, "compared arrays differ in length: \(a.count) vs \(b.count)")
    var worst: Float = 0
    var at = -1
    for i in 0..<a.count {
        let d = abs(a[i] - b[i])
        if d > worst || d.isNaN { worst = d.isNaN ? .infinity : d; at = i }
    }
    return (worst, at)
}

/// The `PaliGemmaError` that `body` throws; records an issue when it throws nothing or another error.
func thrownPaliGemmaError(_ body: () throws -> Void) -> PaliGemmaError? {
    do {
        try body()
        Issue.record("no error")
        return nil
    } catch let error as PaliGemmaError {
        return error
    } catch {
        Issue.record("not a PaliGemmaError: \(error)")
        return nil
    }
}

/// A fresh temporary directory, removed by the caller.
func temporaryDirectory() throws -> URL {
    let url = temporaryRoot.appendingPathComponent(UUID().uuidString)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}

/// One folder per test process for `temporaryDirectory()`, removed when the process exits
/// (hundreds of folders a run were left in /tmp before).
let temporaryRoot: URL = {
    atexit { try? FileManager.default.removeItem(atPath: temporaryRootPath(getpid())) }
    return URL(fileURLWithPath: temporaryRootPath(getpid()))
}()

private func temporaryRootPath(_ pid: pid_t) -> String {
    FileManager.default.temporaryDirectory.appendingPathComponent("pg-test-\(pid)").path
}

/// Copies a fixture model folder into a temporary directory.
func copyFixture(_ name: String) throws -> URL {
    let dir = try temporaryDirectory().appendingPathComponent(name)
    try FileManager.default.copyItem(at: Fixtures.model(name), to: dir)
    return dir
}

/// Deterministic pseudo-random floats in [-1, 1).
struct SeededRandom {
    var state: UInt64
    init(_ seed: UInt64) { state = seed &* 0x9E3779B97F4A7C15 | 1 }
    mutating func next() -> UInt64 {
        state ^= state << 13; state ^= state >> 7; state ^= state << 17
        return state
    }
    mutating func float() -> Float { Float(next() >> 40) / Float(1 << 24) * 2 - 1 }
    mutating func floats(_ n: Int) -> [Float] { (0..<n).map { _ in float() } }
}
