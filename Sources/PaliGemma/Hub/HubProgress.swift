import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What a download reports as it goes.
public enum HubDownloadEvent: Sendable, Equatable {
    /// The file list is known: `files` will be fetched (or found cached), `bytes` in all if known.
    case listed(repo: String, commit: String, files: Int, bytes: Int64?)
    /// The file is already in the cache; nothing is fetched.
    case cached(file: String)
    /// A transfer starts; `resumedFrom` > 0 when a partial file is continued.
    case started(file: String, index: Int, count: Int, size: Int64?, resumedFrom: Int64)
    /// `bytes` of `size` are on disk.
    case progress(file: String, bytes: Int64, size: Int64?)
    /// The connection failed; the transfer resumes from what is on disk.
    case retrying(file: String, attempt: Int, reason: String)
    /// The file is verified and placed.
    case finished(file: String)
}

public typealias HubProgressHandler = @Sendable (HubDownloadEvent) -> Void

/// A one-line progress bar on stderr: file, bar, percent, bytes, rate, ETA.
public final class TerminalProgressBar: @unchecked Sendable {
    private let fd: Int32
    private let width: Int
    private let lock = NSLock()
    private var fileStart = Date()
    private var startBytes: Int64 = 0
    private var lastDraw = Date.distantPast
    private var label = ""

    /// Draws on `fd` (default stderr) whatever it is.
    public init(fileDescriptor fd: Int32 = 2, width: Int = 80) {
        self.fd = fd
        self.width = max(width, 40)
    }

    /// A bar on stderr when stderr is a terminal, else nil (no output).
    /// Width from `$COLUMNS`, else 80.
    public static func standardErrorIfTerminal() -> TerminalProgressBar? {
        guard isatty(2) == 1 else { return nil }
        return TerminalProgressBar(width: ProcessInfo.processInfo.environment["COLUMNS"].flatMap { Int($0) } ?? 80)
    }

    /// The handler to give `HubDownloader`.
    public var handler: HubProgressHandler { { [self] event in self.handle(event) } }

    public func handle(_ event: HubDownloadEvent) {
        lock.lock()
        defer { lock.unlock() }
        switch event {
        case let .listed(repo, commit, files, bytes):
            let total = bytes.map { " (\(Self.formatBytes($0)))" } ?? ""
            emit("\(repo) @ \(commit.prefix(12)): \(files) file\(files == 1 ? "" : "s")\(total)\n")
        case let .cached(file):
            emit("\(file): already cached\n")
        case let .started(file, index, count, size, resumedFrom):
            label = "[\(index)/\(count)] \(file)"
            fileStart = Date()
            startBytes = resumedFrom
            lastDraw = .distantPast
            draw(bytes: resumedFrom, size: size, force: true)
        case let .progress(_, bytes, size):
            draw(bytes: bytes, size: size, force: false)
        case let .retrying(file, attempt, reason):
            emit("\r\u{1B}[K\(file): \(reason); retrying (attempt \(attempt))\n")
        case .finished:
            lastDraw = .distantPast
            emit("\n")
        }
    }

    private func draw(bytes: Int64, size: Int64?, force: Bool) {
        let now = Date()
        guard force || now.timeIntervalSince(lastDraw) >= 0.1 || bytes == size else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(fileStart)
        let rate = elapsed > 0.2 ? Double(bytes - startBytes) / elapsed : nil
        emit("\r\u{1B}[K" + Self.render(label: label, bytes: bytes, size: size, bytesPerSecond: rate, width: width))
    }

    private func emit(_ text: String) {
        let data = Array(text.utf8)
        data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count, let base = raw.baseAddress {
                let n = write(fd, base + offset, raw.count - offset)
                if n <= 0 { return }
                offset += n
            }
        }
    }

    /// One line: `label [#####.....]  42%  1.2 GB / 2.9 GB  35.1 MB/s  ETA 0:48`.
    public static func render(label: String, bytes: Int64, size: Int64?, bytesPerSecond: Double?, width: Int) -> String {
        var stats = ""
        if let size, size > 0 {
            let fraction = min(max(Double(bytes) / Double(size), 0), 1)
            stats += String(format: " %3d%%  ", Int(fraction * 100)) + formatBytes(bytes) + " / " + formatBytes(size)
        } else {
            stats += "  " + formatBytes(bytes)
        }
        if let rate = bytesPerSecond, rate > 0 {
            stats += "  " + formatBytes(Int64(rate)) + "/s"
            if let size, size > bytes { stats += "  ETA " + formatDuration(Double(size - bytes) / rate) }
        }
        // The label keeps at least 24 columns; the bar takes what is left, up to 20.
        let barWidth = min(20, width - stats.count - 24 - 3)
        var bar = ""
        if let size, size > 0, barWidth >= 5 {
            let filled = Int((Double(min(bytes, size)) / Double(size) * Double(barWidth)).rounded(.down))
            bar = " [" + String(repeating: "#", count: filled) + String(repeating: ".", count: barWidth - filled) + "]"
        }
        let room = max(width - stats.count - bar.count, 8)
        let name = label.count > room ? "…" + label.suffix(room - 1) : label
        return name + bar + stats
    }

    /// `999 B`, `1.5 kB`, `35.1 MB`, `2.92 GB` (decimal units, as the hub shows sizes).
    public static func formatBytes(_ n: Int64) -> String {
        if n < 1000 { return "\(n) B" }
        let units = ["kB", "MB", "GB", "TB"]
        var value = Double(n) / 1000
        var unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return String(format: value < 10 ? "%.2f" : value < 100 ? "%.1f" : "%.0f", value) + " " + units[unit]
    }

    /// `0:48`, `12:05`, `1:02:03`.
    public static func formatDuration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let s = Int(min(seconds, 359_999).rounded())
        if s >= 3600 { return String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) }
        return String(format: "%d:%02d", s / 60, s % 60)
    }
}
