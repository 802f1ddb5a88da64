import AsyncHTTPClient
import Foundation
import NIOCore
import PaliGemma
import PaliGemmaJSON

// `--soak N`: N mixed requests against the running server, `--soak-workers` at a time (default
// 8): good ones of every endpoint (plain and streamed), bad ones (broken JSON, a broken image,
// missing fields, a wrong type, an unknown route) and clients that hang up mid-answer. Reports
// the statuses seen, the 5xx other than deliberate 503s (there must be none), and the resident
// memory after the first 100 requests and at the end (growth must stay within 5%).

struct SoakReport: Encodable {
    let requests: Int
    let workers: Int
    let seconds: Double
    let statuses: [String: Int]
    let disconnects: Int
    let unexpected5xx: Int
    let rssAfter100Bytes: Int
    let rssAfterAllBytes: Int
    let rssGrowthPercent: Double

    enum CodingKeys: String, CodingKey {
        case requests, workers, seconds, statuses, disconnects, unexpected5xx = "unexpected_5xx"
        case rssAfter100Bytes = "rss_after_100_bytes", rssAfterAllBytes = "rss_after_all_bytes", rssGrowthPercent = "rss_growth_percent"
    }
}

/// Resident memory now (/proc/self/statm), in bytes.
func currentRSS() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// The body of the i-th soak request: (path, body, whether the client hangs up early).
func soakRequest(_ i: Int, image: String) -> (String, String, Bool) {
    let chat = #"{"messages":[{"role":"user","content":[{"type":"text","text":"answer en how many shapes are there?"},{"type":"image_url","image_url":{"url":"\#(image)"}}]}]"#
    switch i % 16 {
    case 0: return ("/v1/completions", #"{"prompt":"caption en","image":"\#(image)"}"#, false)
    case 1: return ("/v1/chat/completions", chat + "}", false)
    case 2: return ("/v1/chat/completions", chat + #","stream":true,"stream_options":{"include_usage":true}}"#, false)
    case 3: return ("/v1/detect", #"{"image":"\#(image)","labels":["circle","square"]}"#, false)
    case 4: return ("/v1/answer", #"{"image":"\#(image)","question":"how many circles are there?","max_tokens":4}"#, false)
    case 5: return ("/v1/completions", #"{"prompt":"caption en","image":"\#(image)","stream":true,"max_tokens":200}"#, true)
    case 6: return ("/v1/completions", #"{"prompt":"caption en","image":"\#(image)","max_tokens":200}"#, true)
    case 7: return ("/v1/chat/completions", #"{"messages":[{"role":"user","content":"#, false)
    case 8: return ("/v1/completions", #"{"prompt":"caption en","image":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB"}"#, false)
    case 9: return ("/v1/completions", #"{"image":"\#(image)"}"#, false)
    case 10: return ("/v1/chat/completions", #"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":7}}]}]}"#, false)
    case 11: return ("/tokenize", #"{"prompt":"detect circle ; square"}"#, false)
    case 12: return ("/detokenize", #"{"tokens":[2,5,-1]}"#, false)
    case 13: return ("/v1/segment", #"{"image":"\#(image)","label":"circle","temperature":0.7,"seed":\#(i)}"#, false)
    case 14: return ("/no/such/route", "{}", false)
    default: return ("/v1/caption", #"{"image":"\#(image)","max_tokens":0}"#, false)
    }
}

func soak(port: Int, total: Int, workers: Int, image: String) async -> SoakReport {
    var configuration = HTTPClient.Configuration()
    configuration.timeout = .init(connect: .seconds(10), read: .seconds(600))
    let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    let counter = SoakCounter()
    let clock = Date()
    await withTaskGroup(of: Void.self) { group in
        for w in 0..<workers {
            group.addTask {
                var i = w
                while i < total {
                    let (path, body, hangUp) = soakRequest(i, image: image)
                    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)\(path)")
                    request.method = .POST
                    request.headers.add(name: "Content-Type", value: "application/json")
                    request.body = .bytes(ByteBuffer(string: body))
                    do {
                        let response = try await client.execute(request, timeout: hangUp ? .milliseconds(30 + Int64(i % 50)) : .seconds(600))
                        _ = try await response.body.collect(upTo: 64 << 20)
                        counter.record(status: Int(response.status.code), disconnect: false)
                    } catch {
                        counter.record(status: hangUp ? nil : -1, disconnect: hangUp)
                    }
                    if counter.count == 100 { counter.rssAfter100 = currentRSS() }
                    i += workers
                }
            }
        }
    }
    let seconds = Date().timeIntervalSince(clock)
    try? await client.shutdown()
    let after = currentRSS()
    let base = counter.rssAfter100 > 0 ? counter.rssAfter100 : after
    return SoakReport(requests: total, workers: workers, seconds: seconds, statuses: counter.statuses, disconnects: counter.disconnects,
                      unexpected5xx: counter.statuses.filter { (Int($0.key) ?? 0) >= 500 && $0.key != "503" || $0.key == "-1" }.values.reduce(0, +),
                      rssAfter100Bytes: base, rssAfterAllBytes: after, rssGrowthPercent: 100 * Double(after - base) / Double(max(1, base)))
}

/// Counts shared by the soak workers.
final class SoakCounter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var statuses: [String: Int] = [:]
    private(set) var disconnects = 0
    private var done = 0
    private var rss100 = 0
    var count: Int { lock.withLock { done } }
    var rssAfter100: Int {
        get { lock.withLock { rss100 } }
        set { lock.withLock { rss100 = newValue } }
    }

    /// A finished request: its status (-1: the client failed unexpectedly), or a deliberate hang-up.
    func record(status: Int?, disconnect: Bool) {
        lock.withLock {
            done += 1
            if disconnect { disconnects += 1 }
            if let status { statuses[String(status), default: 0] += 1 }
        }
    }
}
