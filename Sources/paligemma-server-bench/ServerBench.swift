// Load benchmark of `paligemma serve`: starts the server in this process (port 0), then for each
// concurrency level runs that many streaming clients at once against /v1/completions, each
// sending its requests back to back, and prints one JSON object: aggregate generated tokens/s,
// p50/p95 time to first token and inter-token latency (measured by the clients, between
// streamed chunks), the worst inter-token gap, the server's worst prefill stall, peak RSS, and
// each level's throughput and p95 inter-token latency as ratios to one client's.
// Build with `swift build -c release --product paligemma-server-bench`.
//
// Usage: paligemma-server-bench --model DIR [--clients 1,2,4,8] [--requests 1] [--max-tokens 64]
//          [--prompt "caption en"] [--threads N] [--prefill-share 1] [--same-image] [--adapters N]
//          [--adapter-rank 8] [--precision exact|fast] [--out FILE]
//        paligemma-server-bench --model DIR --soak 1000 [--soak-workers 8]   (see Soak.swift)
// With a random checkpoint (`paligemma random-checkpoint`) answers rarely end early, so every
// request generates --max-tokens tokens; each client sends its own random image unless
// --same-image (then the vision cache serves all but the first). With --adapters N the server
// also serves N random LoRA adapters (the default targets, --adapter-rank) and client c asks for
// adapter c mod (N + 1) (0: the base model), so one batched step mixes them.
import AsyncHTTPClient
import Foundation
import NIOCore
import PaliGemma
import PaliGemmaJSON
import PaliGemmaServer
import ServiceLifecycle

struct Level: Encodable {
    let clients: Int
    let requests: Int
    let generatedTokens: Int
    let seconds: Double
    let tokensPerSecond: Double
    let ttftP50, ttftP95: Double
    let interTokenP50, interTokenP95, interTokenMax: Double
    var throughputRatio = 1.0
    var interTokenP95Ratio = 1.0
    let errors: Int

    enum CodingKeys: String, CodingKey {
        case clients, requests, generatedTokens = "generated_tokens", seconds, tokensPerSecond = "tokens_per_s"
        case ttftP50 = "ttft_p50_s", ttftP95 = "ttft_p95_s", interTokenP50 = "itl_p50_s", interTokenP95 = "itl_p95_s"
        case interTokenMax = "itl_max_s", throughputRatio = "throughput_vs_1_client", interTokenP95Ratio = "itl_p95_vs_1_client", errors
    }
}

struct Report: Encodable {
    let model: String
    let threads: Int
    let precision: String
    let fastKernel: String
    let maxTokens: Int
    let prompt: String
    let prefillShare: Double
    let burstPrefill: Bool
    let sameImage: Bool
    let adapters: Int
    let adapterRank: Int
    let loadSeconds: Double
    let levels: [Level]
    let worstPrefillStallSeconds: Double
    let peakRSSBytes: Int

    enum CodingKeys: String, CodingKey {
        case model, threads, precision, fastKernel = "fast_kernel", maxTokens = "max_tokens", prompt, prefillShare = "prefill_share", burstPrefill = "burst_prefill"
        case sameImage = "same_image"
        case adapters, adapterRank = "adapter_rank"
        case loadSeconds = "load_s", levels, worstPrefillStallSeconds = "worst_prefill_stall_s", peakRSSBytes = "peak_rss_bytes"
    }
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data("paligemma-server-bench: \(message)\n".utf8))
    exit(64)
}

/// The command line.
struct Settings: Sendable {
    var model = ""
    var clientLevels = [1, 2, 4, 8]
    var requestsPerClient = 1
    var maxTokens = 64
    var prompt = "caption en"
    var threads: Int?
    var prefillShare = InferenceEngine.defaultPrefillShare
    var burstPrefill = true
    var sameImage = false
    var out: String?
    var soak: Int?
    var soakWorkers = 8
    var adapters = 0
    var adapterRank = 8
    var precision: Precision?

    static func parse(_ arguments: [String]) -> Settings {
        var s = Settings()
        var model: String?
        var rest = arguments[...]
        while let a = rest.popFirst() {
            func value() -> String {
                guard let v = rest.popFirst() else { fail("\(a) needs a value") }
                return v
            }
            func number<T: LosslessStringConvertible>() -> T {
                guard let n = T(value()) else { fail("\(a) takes a number") }
                return n
            }
            switch a {
            case "--model": model = value()
            case "--clients": s.clientLevels = value().split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
            case "--requests": s.requestsPerClient = number()
            case "--max-tokens": s.maxTokens = number()
            case "--prompt": s.prompt = value()
            case "--threads": s.threads = number() as Int
            case "--prefill-share": s.prefillShare = number()
            case "--no-burst-prefill": s.burstPrefill = false
            case "--same-image": s.sameImage = true
            case "--out": s.out = value()
            case "--soak": s.soak = number() as Int
            case "--soak-workers": s.soakWorkers = number()
            case "--adapters": s.adapters = number()
            case "--adapter-rank": s.adapterRank = number()
            case "--precision":
                guard let p = Precision(rawValue: value()) else { fail("--precision takes exact or fast") }
                s.precision = p
            default: fail("unknown argument \(a)")
            }
        }
        guard let model, !s.clientLevels.isEmpty, s.requestsPerClient > 0, s.maxTokens > 0, (s.soak ?? 1) > 0, s.soakWorkers > 0 else {
            fail("usage: paligemma-server-bench --model DIR [--clients 1,2,4,8] [--requests 1] [--max-tokens 64] [--prompt P] [--threads N] [--prefill-share X] [--no-burst-prefill] [--same-image] [--adapters N] [--adapter-rank R] [--precision exact|fast] [--out FILE] | --soak N [--soak-workers 8]")
        }
        s.model = model
        return s
    }
}

struct Sample { var ttft: Double; var gaps: [Double]; var tokens: Int; var failed: Bool }

func quantile(_ values: [Double], _ q: Double) -> Double {
    guard !values.isEmpty else { return 0 }
    let s = values.sorted()
    return s[min(s.count - 1, Int((q * Double(s.count - 1)).rounded()))]
}

/// A random-noise PNG of side `size` (one per seed), as a data: URL.
func noiseImage(_ seed: Int, size: Int) throws -> String {
    var rng = SystemRandomNumberGenerator()
    var picture = RGBImage(width: size, height: size, fill: (UInt8(seed * 37 % 256), 128, 64))
    for y in stride(from: 0, to: size, by: 8) {
        for x in stride(from: 0, to: size, by: 8) {
            picture.fillRectangle(x0: x, y0: y, x1: x + 7, y1: y + 7,
                                  color: RGBColor(UInt8.random(in: 0...255, using: &rng), UInt8.random(in: 0...255, using: &rng), UInt8(seed % 256)))
        }
    }
    return "data:image/png;base64," + (try PNGWriter.encode(picture)).base64EncodedString()
}

/// One streaming request; the times of its chunks.
func run(client: HTTPClient, port: Int, settings: Settings, image: String, model: String? = nil) async -> Sample {
    var body: [String: Any] = ["prompt": settings.prompt, "image": image, "max_tokens": settings.maxTokens, "stream": true,
                               "stream_options": ["include_usage": true]]
    if let model { body["model"] = model }
    guard let data = try? JSONSerialization.data(withJSONObject: body) else { return Sample(ttft: 0, gaps: [], tokens: 0, failed: true) }
    var request = HTTPClientRequest(url: "http://127.0.0.1:\(port)/v1/completions")
    request.method = .POST
    request.body = .bytes(ByteBuffer(bytes: data))
    let start = Date()
    var times: [Date] = []
    var tokens = 0
    do {
        let response = try await client.execute(request, timeout: .seconds(3600))
        guard response.status == .ok else { return Sample(ttft: 0, gaps: [], tokens: 0, failed: true) }
        var pending = ""
        for try await chunk in response.body {
            pending += String(buffer: chunk)
            while let end = pending.range(of: "\n\n") {
                let event = String(pending[..<end.lowerBound])
                pending = String(pending[end.upperBound...])
                guard event.hasPrefix("data: "), event != "data: [DONE]",
                      let json = try? JSONParser.parse(Array(event.dropFirst(6).utf8)) else { continue }
                if let text = json["choices"]?[0]?["text"]?.stringValue, !text.isEmpty { times.append(Date()) }
                if let n = json["usage"]?["completion_tokens"]?.intValue { tokens = n }
            }
        }
    } catch {
        return Sample(ttft: 0, gaps: [], tokens: tokens, failed: true)
    }
    guard let first = times.first else { return Sample(ttft: 0, gaps: [], tokens: tokens, failed: tokens == 0) }
    let gaps = zip(times.dropFirst(), times).map { $0.timeIntervalSince($1) }
    return Sample(ttft: first.timeIntervalSince(start), gaps: gaps, tokens: tokens, failed: false)
}

@main
struct ServerBench {
    static func main() async throws {
        let settings = Settings.parse(Array(CommandLine.arguments.dropFirst()))
        if let threads = settings.threads { Kernels.threads = threads }
        Kernels.useFrontEndPrecision(settings.precision)  // as `paligemma serve` chooses it
        // No Kernels.keepFreedMemory(): `paligemma serve` hands freed memory back (the soak's bound).
        var options = ServerOptions()
        options.port = 0
        options.maxBatch = settings.clientLevels.max() ?? 8
        options.maxTokensLimit = settings.soak == nil ? max(settings.maxTokens, 16) : 1024
        options.prefillShare = settings.prefillShare
        options.burstPrefill = settings.burstPrefill
        options.requestTimeout = 3600
        let modelURL = URL(fileURLWithPath: settings.model)
        var adapterFolders: [URL] = []
        if settings.adapters > 0 {
            let clock = Date()
            let model = try PaliGemmaModel(directory: modelURL)
            for i in 1...settings.adapters {
                let trainable = TrainableModel(model: model, method: .lora(LoRAConfig(rank: settings.adapterRank, alpha: 2 * Float(settings.adapterRank))),
                                               seed: UInt64(i))
                var state = UInt64(100 + i)  // a linear congruential generator: B's values need only be non-zero
                for p in trainable.parametersByName.values where p.name.hasSuffix(".lora_B.weight") {
                    for j in 0..<p.value.count {
                        state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                        p.value.data[j] = (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.02
                    }
                }
                let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pg-server-bench-\(getpid())-adapter-\(i)")
                try trainable.adapter(baseModel: settings.model).write(to: folder, overwrite: true)
                adapterFolders.append(folder)
                options.adapters.append(NamedAdapter(name: "adapter-\(i)", directory: folder))
            }
            FileHandle.standardError.write(Data("wrote \(settings.adapters) random adapters of rank \(settings.adapterRank) in \(String(format: "%.1f", Date().timeIntervalSince(clock))) s\n".utf8))
        }
        defer { for folder in adapterFolders { try? FileManager.default.removeItem(at: folder) } }
        let server = InferenceServer(options: options) { (try PaliGemmaPipeline(directory: modelURL), nil) }
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let group = server.serviceGroup(signals: []) { portContinuation.yield($0) }
        let running = Task { try await group.run() }
        var bound = 0
        for await p in ports {
            bound = p
            break
        }
        let port = bound
        let loadClock = Date()
        while server.backend == nil {
            if let failure = server.loadFailure { fail("the model did not load: \(failure)") }
            try await Task.sleep(for: .milliseconds(50))
            if Date().timeIntervalSince(loadClock) > 900 { fail("the model did not load") }
        }
        let loadSeconds = Date().timeIntervalSince(loadClock)
        guard let backend = server.backend else { fail("no backend") }
        let size = backend.pipeline.model.config.visionConfig.imageSize
        // No read timeout: with many clients a stream's first token can take minutes on a small CPU.
        var configuration = HTTPClient.Configuration()
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(3600))
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)

        if let total = settings.soak {
            let report = await soak(port: port, total: total, workers: settings.soakWorkers, image: try noiseImage(1, size: size))
            let json = try JSONOutput.string(report)
            print(json)
            if let out = settings.out { try Data((json + "\n").utf8).write(to: URL(fileURLWithPath: out)) }
            await group.triggerGracefulShutdown()
            try await running.value
            try await client.shutdown()
            exit(report.unexpected5xx == 0 && report.rssGrowthPercent <= 5 ? 0 : 1)
        }

        // Warm-up: one short request (pages the weights in, starts the threads).
        _ = await run(client: client, port: port, settings: settings, image: try noiseImage(999, size: size))

        var levels: [Level] = []
        for clients in settings.clientLevels {
            let perClient = settings.requestsPerClient
            let images = try (0..<clients * perClient).map { try noiseImage(settings.sameImage ? 0 : $0 + 1000 * clients, size: size) }
            let clock = Date()
            let samples = await withTaskGroup(of: [Sample].self) { group in
                for c in 0..<clients {
                    group.addTask {
                        var done: [Sample] = []
                        let k = c % (settings.adapters + 1)
                        let model = settings.adapters > 0 && k > 0 ? "adapter-\(k)" : nil
                        for r in 0..<perClient {
                            done.append(await run(client: client, port: port, settings: settings, image: images[c * perClient + r], model: model))
                        }
                        return done
                    }
                }
                var all: [Sample] = []
                for await s in group { all += s }
                return all
            }
            let seconds = Date().timeIntervalSince(clock)
            let ok = samples.filter { !$0.failed }
            let tokens = ok.reduce(0) { $0 + $1.tokens }
            let gaps = ok.flatMap(\.gaps)
            var level = Level(clients: clients, requests: samples.count, generatedTokens: tokens, seconds: seconds,
                              tokensPerSecond: Double(tokens) / seconds,
                              ttftP50: quantile(ok.map(\.ttft), 0.5), ttftP95: quantile(ok.map(\.ttft), 0.95),
                              interTokenP50: quantile(gaps, 0.5), interTokenP95: quantile(gaps, 0.95), interTokenMax: gaps.max() ?? 0,
                              errors: samples.count - ok.count)
            if let one = levels.first {
                level.throughputRatio = level.tokensPerSecond / one.tokensPerSecond
                level.interTokenP95Ratio = level.interTokenP95 / one.interTokenP95
            }
            levels.append(level)
            FileHandle.standardError.write(Data("clients \(clients): \(String(format: "%.2f", level.tokensPerSecond)) tokens/s, itl p95 \(String(format: "%.3f", level.interTokenP95)) s\n".utf8))
        }

        let report = Report(model: settings.model, threads: Kernels.threads, precision: Kernels.precision.rawValue,
                            fastKernel: Kernels.fastKernelOfProducts.name, maxTokens: settings.maxTokens, prompt: settings.prompt,
                            prefillShare: settings.prefillShare, burstPrefill: settings.burstPrefill, sameImage: settings.sameImage, adapters: settings.adapters,
                            adapterRank: settings.adapterRank, loadSeconds: loadSeconds, levels: levels,
                            worstPrefillStallSeconds: server.metrics.worstPrefillStall, peakRSSBytes: Benchmark.peakRSS)
        let json = try JSONOutput.string(report)
        print(json)
        if let out = settings.out { try Data((json + "\n").utf8).write(to: URL(fileURLWithPath: out)) }
        await group.triggerGracefulShutdown()
        try await running.value
        try await client.shutdown()
    }
}
