import Foundation
import HTTPTypes
import Hummingbird
import Logging
import PaliGemma
import ServiceLifecycle
import UnixSignals

/// Everything `paligemma serve` can set (docs/SERVER.md lists each with its flag).
public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// The model's id in requests and /v1/models (default: the model folder's name).
    public var modelID: String?
    public var maxBatch = 8
    public var maxQueue = 64
    /// Request body bytes (413 beyond).
    public var maxBodyBytes = 20 << 20
    public var images = ImagePolicy()
    /// Text tokens of a prompt (after the image tokens and <bos>; 400 beyond).
    public var maxPromptTokens = 512
    /// The largest max_tokens a request may ask for (400 beyond).
    public var maxTokensLimit = 1024
    /// max_tokens when a request gives none.
    public var defaultMaxTokens = 256
    /// Seconds a request may run, queue included, before it is cancelled.
    public var requestTimeout = 300.0
    /// Seconds SIGTERM waits for running requests before cancelling them.
    public var shutdownGrace = 30.0
    /// Accepted API keys; empty: no authentication.
    public var apiKeys: [String] = []
    /// The origin allowed by CORS; nil: no CORS headers.
    public var corsOrigin: String?
    public var visionCacheEntries = 64
    /// How chat requests with system messages or earlier turns are treated.
    public var chatHistory: ChatHistoryPolicy = .reject
    /// Time a step may give to a new request's prefill, as a share of the decode step's time.
    public var prefillShare = InferenceEngine.defaultPrefillShare
    /// Whether requests arriving together while nothing decodes start streaming together, once
    /// all their prefills are done (`InferenceEngine.burstPrefill`).
    public var burstPrefill = true
    /// /health answers 503 when the engine has had work but made no progress for this long.
    public var stallSeconds = 120.0
    /// LoRA adapters served beside the base model (`--adapter NAME=DIR`), chosen by a request's
    /// `model`; requests with different adapters, or none, share each batched step.
    public var adapters: [NamedAdapter] = []

    public init() {}
}

/// A PEFT LoRA adapter folder and the name requests choose it by.
public struct NamedAdapter: Sendable, Equatable {
    public var name: String
    public var directory: URL

    public init(name: String, directory: URL) {
        self.name = name
        self.directory = directory
    }
}

/// PaliGemma is single-turn: what to do with the rest of a chat.
public enum ChatHistoryPolicy: String, Sendable, CaseIterable {
    /// 400 when the request has system messages or earlier turns.
    case reject
    /// Use only the last user message; ignore system messages and earlier turns.
    case lastUserMessage = "last-user-message"
}

/// The loaded model and the engine that serves it.
public final class ServingBackend: Sendable {
    public let pipeline: PaliGemmaPipeline
    public let engine: InferenceEngine
    public let maskDecoder: MaskDecoder?
    public let modelID: String
    /// The served adapters, in the order given.
    public let adapters: [LoRASet]

    init(pipeline: PaliGemmaPipeline, engine: InferenceEngine, maskDecoder: MaskDecoder?, modelID: String, adapters: [LoRASet] = []) {
        self.pipeline = pipeline
        self.engine = engine
        self.maskDecoder = maskDecoder
        self.modelID = modelID
        self.adapters = adapters
    }

    /// The adapter a request's `model` names: nil for the base model (its id, or no `model`).
    /// Without served adapters any `model` means the base model; with them, an unknown name
    /// is a 404 `model_not_found`.
    func adapter(named model: String?, field: String = "model") throws -> LoRASet? {
        guard let model, model != modelID, !adapters.isEmpty else { return nil }
        if let adapter = adapters.first(where: { $0.name == model }) { return adapter }
        let known = ([modelID] + adapters.map(\.name)).map { "'\($0)'" }.joined(separator: ", ")
        throw ServerError(.notFound, "the model '\(model)' is not served here; this server serves \(known)", param: field, code: "model_not_found")
    }
}

/// `paligemma serve`: an HTTP server (Hummingbird 2) in front of one continuous-batching engine.
/// The HTTP side starts at once and answers /health with 503 while the model loads.
public final class InferenceServer: Sendable {
    public let options: ServerOptions
    public let metrics = ServerMetrics()
    /// Unix time the server was made (/v1/models' "created").
    let startTime = Int(Date().timeIntervalSince1970)
    let logger: Logger
    private let load: @Sendable () throws -> (PaliGemmaPipeline, MaskDecoder?)
    private let state = Mutex<LoadState>(.loading)

    enum LoadState {
        case loading
        case ready(ServingBackend)
        case failed(String)
        case stopped
    }

    /// `load` runs once, off the HTTP threads, when the server starts: it returns the pipeline
    /// and, when there is one, the mask decoder for /v1/segment.
    public init(options: ServerOptions, logger: Logger = Logger(label: "paligemma.server"),
                load: @escaping @Sendable () throws -> (PaliGemmaPipeline, MaskDecoder?)) {
        self.options = options
        self.logger = logger
        self.load = load
    }

    /// The backend once the model is loaded.
    public var backend: ServingBackend? {
        state.withLock { if case let .ready(b) = $0 { return b } else { return nil } }
    }

    /// Why the model failed to load, if it did.
    public var loadFailure: String? {
        state.withLock { if case let .failed(reason) = $0 { return reason } else { return nil } }
    }

    /// The backend, or the 503 the client gets while the model loads (or after it failed).
    func readyBackend() throws -> ServingBackend {
        try state.withLock { s in
            switch s {
            case let .ready(b): return b
            case .loading: throw ServerError(.serviceUnavailable, "the model is still loading", code: "loading", retryAfter: 5)
            case let .failed(reason): throw ServerError(.serviceUnavailable, "the model failed to load: \(reason)", code: "load_failed")
            case .stopped: throw ServerError(.serviceUnavailable, "the server is shutting down", code: "shutting_down", retryAfter: 5)
            }
        }
    }

    /// The Hummingbird application (routes, middleware, address). `onServerRunning` is told the
    /// port it bound (useful with port 0).
    public func application(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> some ApplicationProtocol {
        let router = Router(context: ServerRequestContext.self)
        // CORS outermost, so that error responses carry its headers too.
        if let origin = options.corsOrigin {
            router.add(middleware: CORSMiddleware(
                allowOrigin: .custom(origin),
                allowHeaders: [.contentType, .authorization, HTTPField.Name("X-Api-Key")!],
                allowMethods: [.get, .post, .options]))
        }
        router.add(middleware: ErrorMiddleware(metrics: metrics, logger: logger))
        router.add(middleware: APIKeyMiddleware(keys: options.apiKeys, open: ["/health"]))
        Routes(server: self).register(on: router)
        return Application(
            router: router,
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "paligemma"),
            onServerRunning: { channel in await onServerRunning(channel.localAddress?.port ?? 0) },
            logger: logger)
    }

    /// Runs until SIGTERM / SIGINT (or `triggerGracefulShutdown` on the group): loads the model,
    /// serves, then drains (new requests get 503, running ones get `shutdownGrace` seconds).
    public func run(onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) async throws {
        let group = serviceGroup(signals: [.sigterm, .sigint], onServerRunning: onServerRunning)
        try await group.run()
    }

    /// The services: the HTTP application first and the engine last, so that on shutdown the
    /// engine drains first (the HTTP side still delivers the answers), then the HTTP side stops.
    public func serviceGroup(signals: [UnixSignal], onServerRunning: @escaping @Sendable (Int) async -> Void = { _ in }) -> ServiceGroup {
        ServiceGroup(configuration: .init(
            services: [.init(service: application(onServerRunning: onServerRunning)), .init(service: EngineService(server: self))],
            gracefulShutdownSignals: signals,
            logger: logger))
    }

    /// Loads the model and starts the engine (called by the engine service).
    func start() throws -> ServingBackend {
        do {
            let (pipeline, maskDecoder) = try load()
            let contextTokens = pipeline.model.config.numImageTokens + 1 + options.maxPromptTokens + options.maxTokensLimit
            let engine = try InferenceEngine(pipeline: pipeline, maxBatch: options.maxBatch, maxQueue: options.maxQueue,
                                             contextTokens: min(contextTokens, pipeline.model.config.textConfig.maxPositionEmbeddings),
                                             visionCacheEntries: options.visionCacheEntries, prefillShare: options.prefillShare,
                                             burstPrefill: options.burstPrefill)
            let id = options.modelID ?? pipeline.directory.lastPathComponent
            var adapters: [LoRASet] = []
            for named in options.adapters {
                guard named.name != id, !adapters.contains(where: { $0.name == named.name }) else {
                    throw PaliGemmaError.input("--adapter \(named.name)=...: the name is taken (by the base model or another adapter)")
                }
                adapters.append(try pipeline.model.bind(LoRAAdapter(directory: named.directory), name: named.name))
            }
            engine.observer = metrics
            engine.start()
            let backend = ServingBackend(pipeline: pipeline, engine: engine, maskDecoder: maskDecoder, modelID: id, adapters: adapters)
            state.withLock { $0 = .ready(backend) }
            return backend
        } catch {
            state.withLock { $0 = .failed("\(error)") }
            throw error
        }
    }

    func stopped() { state.withLock { $0 = .stopped } }
}

/// Loads the model, then waits for graceful shutdown and drains the engine.
struct EngineService: Service {
    let server: InferenceServer

    func run() async throws {
        let backend = try await Task.detached { try server.start() }.value
        server.logger.info("model ready", metadata: ["model": .string(backend.modelID)])
        try? await gracefulShutdown()
        server.logger.info("draining", metadata: ["grace_seconds": .stringConvertible(server.options.shutdownGrace)])
        await backend.engine.drain(grace: server.options.shutdownGrace)
        server.stopped()
    }
}

/// A value behind a lock.
final class Mutex<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()

    init(_ value: Value) { self.value = value }

    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
