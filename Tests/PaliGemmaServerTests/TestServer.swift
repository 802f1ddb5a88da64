import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import PaliGemma
import PaliGemmaJSON
@testable import PaliGemmaServer
import ServiceLifecycle
import Testing

/// The repository's root (for Models/ and Examples/).
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
let shapesModel = repositoryRoot.appendingPathComponent("Models/shapes-tiny")

/// A `data:` URL of a file in the repository.
func dataURL(_ relativePath: String) throws -> String {
    let data = try Data(contentsOf: repositoryRoot.appendingPathComponent(relativePath))
    return "data:image/png;base64," + data.base64EncodedString()
}

/// A random-weight model with the shapes model's shape and tokenizer: it almost never says
/// <eos>, so its requests run for as many tokens as they ask (for queue, cancel and timeout tests).
let randomShapesModel: URL = {
    let folder = FileManager.default.temporaryDirectory.appendingPathComponent("pg-server-random-\(getpid())")
    // Removed when the test process exits.
    atexit {
        try? FileManager.default.removeItem(at: FileManager.default.temporaryDirectory.appendingPathComponent("pg-server-random-\(getpid())"))
    }
    if !FileManager.default.fileExists(atPath: folder.appendingPathComponent("config.json").path) {
        do {
            let json = try RandomCheckpoint.configJSON(contentsOf: shapesModel.appendingPathComponent("config.json"), dtype: "float32")
            try RandomCheckpoint.write(configJSON: json, dtype: .float32, to: folder, seed: 11)
            for file in ["tokenizer.json", "tokenizer.model", "tokenizer_config.json", "preprocessor_config.json"] {
                try FileManager.default.copyItem(at: shapesModel.appendingPathComponent(file), to: folder.appendingPathComponent(file))
            }
        } catch {
            Issue.record("cannot write the random model: \(error)")
        }
    }
    return folder
}()

/// The tests' HTTP client. A plain (not streamed) answer sends nothing until it is complete, and
/// under the sanitizer passes, with the rest of the suite running beside it on 2 cores, that can
/// take longer than `HTTPClient.shared`'s 90 s read timeout; each request has its own deadline.
let testClient: HTTPClient = {
    var configuration = HTTPClient.Configuration()
    configuration.timeout = .init(connect: .seconds(30), read: .seconds(900))
    return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
}()

/// Runs `body` on a thread of its own, off Swift's cooperative pool (as many threads as cores: 2
/// here), so that long synchronous work in an async test (loading a model, generating with the
/// library) does not starve the servers' request tasks in the tests running beside it.
func offPool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread { continuation.resume(with: Result { try body() }) }.start()
    }
}

/// Runs `group` and waits for the port its application reports on `ports` (bound to port 0).
func runUntilBound(_ group: ServiceGroup, ports: AsyncStream<Int>) async -> (Task<Void, Error>, Int) {
    let running = Task { try await group.run() }
    for await port in ports { return (running, port) }
    return (running, 0)
}

/// A server on a free loopback port, started for one test and stopped at its end.
final class TestServer: @unchecked Sendable {
    let server: InferenceServer
    let group: ServiceGroup
    let port: Int
    var client: HTTPClient { testClient }
    private let running: Task<Void, Error>

    init(model: URL = shapesModel, configure: (inout ServerOptions) -> Void = { _ in }) async throws {
        var options = ServerOptions()
        options.port = 0
        configure(&options)
        server = InferenceServer(options: options) { (try PaliGemmaPipeline(directory: model), nil) }
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        group = server.serviceGroup(signals: []) { port in continuation.yield(port) }
        (running, port) = await runUntilBound(group, ports: ports)
        // Wait for the model.
        for _ in 0..<600 where server.backend == nil { try await Task.sleep(for: .milliseconds(10)) }
        guard server.backend != nil else { throw PaliGemmaError.input("the test server did not load its model") }
    }

    var base: String { "http://127.0.0.1:\(port)" }

    struct Reply {
        let status: Int
        let headers: HTTPHeaders
        let body: String
        var json: JSONValue? { try? JSONParser.parse(Array(body.utf8)) }
    }

    func request(_ method: HTTPMethod = .POST, _ path: String, body: String? = nil, headers: [(String, String)] = [],
                 timeout: TimeAmount = .seconds(900)) async throws -> Reply {
        var request = HTTPClientRequest(url: base + path)
        request.method = method
        if let body {
            request.body = .bytes(ByteBuffer(string: body))
            request.headers.add(name: "Content-Type", value: "application/json")
        }
        for (k, v) in headers { request.headers.add(name: k, value: v) }
        let response = try await client.execute(request, timeout: timeout)
        let bytes = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), headers: response.headers, body: String(buffer: bytes))
    }

    func post(_ path: String, _ object: [String: Any], headers: [(String, String)] = []) async throws -> Reply {
        let data = try JSONSerialization.data(withJSONObject: object)
        return try await request(.POST, path, body: String(decoding: data, as: UTF8.self), headers: headers)
    }

    /// The server's /metrics value of a sample line that starts with `prefix` (0 when absent).
    func metric(_ prefix: String) async throws -> Double {
        let text = try await request(.GET, "/metrics").body
        for line in text.split(separator: "\n") where line.hasPrefix(prefix + " ") {
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        return 0
    }

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await running.value
    }
}

/// A chat request body for one image and one prompt.
func chatBody(_ prompt: String, image: String, extra: [String: Any] = [:]) -> [String: Any] {
    var body: [String: Any] = [
        "model": "shapes-tiny",
        "messages": [["role": "user", "content": [
            ["type": "text", "text": prompt],
            ["type": "image_url", "image_url": ["url": image]],
        ]]],
    ]
    for (k, v) in extra { body[k] = v }
    return body
}

/// The `data:` payloads of an SSE body, in order.
func sseEvents(_ body: String) -> [String] {
    body.components(separatedBy: "\n\n").compactMap { block in
        block.hasPrefix("data: ") ? String(block.dropFirst(6)) : nil
    }
}
