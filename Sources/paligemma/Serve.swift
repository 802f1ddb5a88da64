import ArgumentParser
import Foundation
import Logging
import PaliGemma
import PaliGemmaServer

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the model over HTTP: OpenAI-compatible and typed task endpoints, continuous batching.",
        discussion: """
        Binds 127.0.0.1:8080 unless --host / --port say otherwise. Endpoints, flags and metrics:
        docs/SERVER.md. SIGTERM or Ctrl-C stops taking requests, lets running ones finish for
        --shutdown-grace seconds, then exits 0.

        Examples:
          paligemma serve
          paligemma serve --model ~/models/paligemma-3b-mix-224 --port 9000 --api-key-file keys.txt
          curl -s localhost:8080/v1/caption -d '{"image": "data:image/png;base64,'"$(base64 -w0 cat.png)"'"}'
        """)

    @Option(help: "Checkpoint folder (or a hub id already in the local cache). Default: the bundled shapes model.") var model: String?
    @Option(help: ArgumentHelp("A PEFT LoRA adapter: NAME=DIR serves it beside the base model, chosen by a request's \"model\" (repeatable; requests with different adapters share each batched step); a plain DIR is applied to the base model itself (at most one).", valueName: "NAME=DIR|DIR"))
    var adapter: [String] = []
    @Option(help: "Weights in memory: none (as stored), int8 or int4.") var quantize = "none"
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: precisionHelp) var precision: Precision?
    @OptionGroup var configKeys: ConfigKeyArguments
    @Option(help: "Mask decoder checkpoint vae-oid.npz for /v1/segment masks (default: $PALIGEMMA_VAE, beside the model, ~/.cache/paligemma).")
    var vae: String?

    @Option(help: "Address to bind.") var host = "127.0.0.1"
    @Option(help: "Port to bind (0: any free port, printed at start).") var port = 8080
    @Option(name: .customLong("model-id"), help: "The model's id in requests and /v1/models (default: the folder's name).") var modelID: String?

    @Option(name: .customLong("max-batch"), help: "Most requests generating at once (one batched forward per step).") var maxBatch = 8
    @Option(name: .customLong("max-queue"), help: "Most requests waiting behind the running batch; more get 503 with Retry-After.") var maxQueue = 64
    @Option(name: .customLong("prefill-share"), help: "Time each step gives to a new request's prefill, as a share of the decode step (running streams wait that much longer while a request joins).")
    var prefillShare = InferenceEngine.defaultPrefillShare
    @Flag(name: .customLong("burst-prefill"), inversion: .prefixedNo,
          help: "Requests that arrive together while nothing is decoding start streaming together, once all their prompts are prefilled (full batches from the first step, no stream paused by a prefill; the first request's first token comes later).")
    var burstPrefill = true
    @Option(name: .customLong("vision-cache"), help: "Images whose vision features are kept (least recently used go first).") var visionCache = 64

    @Option(name: .customLong("max-body-bytes"), help: "Largest request body (413 beyond).") var maxBodyBytes = 20 << 20
    @Option(name: .customLong("max-image-bytes"), help: "Largest image file (413 beyond).") var maxImageBytes = 10 << 20
    @Option(name: .customLong("max-image-pixels"), help: "Most pixels in an image, read from its header before decoding (413 beyond).")
    var maxImagePixels = 50_000_000
    @Option(name: .customLong("max-images"), help: "Most images in one request (several image_url parts, or \"images\"), each adding the model's image tokens to the prompt (400 beyond).")
    var maxImages = 4
    @Option(name: .customLong("max-video-bytes"), help: "Largest video file (413 beyond; a data: URL must also fit --max-body-bytes).")
    var maxVideoBytes = 16 << 20
    @Option(name: .customLong("max-video-frames"), help: "Most video frames in one request (a video's \"frames\", all videos together), each adding the model's image tokens (400 beyond).")
    var maxVideoFrames = 16
    @Option(name: .customLong("max-frame-pixels"), help: "Most pixels in a video frame, checked before it is converted (413 beyond).")
    var maxFramePixels = 3840 * 2160
    @Option(name: .customLong("max-prompt-tokens"), help: "Most text tokens in a prompt (400 beyond).") var maxPromptTokens = 512
    @Option(name: .customLong("max-tokens-limit"), help: "The largest max_tokens a request may ask for (400 beyond).") var maxTokensLimit = 1024
    @Option(name: .customLong("default-max-tokens"), help: "max_tokens of a request that gives none.") var defaultMaxTokens = 256
    @Option(name: .customLong("request-timeout"), help: "Seconds a request may take, queue included, before it is cancelled.")
    var requestTimeout = 300.0
    @Option(name: .customLong("shutdown-grace"), help: "Seconds SIGTERM waits for running requests before cancelling them.")
    var shutdownGrace = 30.0
    @Option(name: .customLong("stall-seconds"), help: "/health answers 503 when the engine has had work but no progress for this long.")
    var stallSeconds = 120.0

    @Option(name: .customLong("api-key"), help: "An accepted API key (repeatable). Every route but /health then needs it.") var apiKey: [String] = []
    @Option(name: .customLong("api-key-file"), help: "A file of accepted API keys, one per line.") var apiKeyFile: String?
    @Option(name: .customLong("cors-origin"), help: "The origin CORS allows (no CORS headers without it).") var corsOrigin: String?
    @Option(name: .customLong("media-root"), help: "Allow local image and video paths, but only under this folder.") var mediaRoot: String?
    @Flag(name: .customLong("allow-remote-images"), help: "Fetch images and videos given as http(s) URLs, from public addresses only (each redirect checked again), within --max-image-bytes / --max-video-bytes and --remote-timeout.")
    var allowRemoteImages = false
    @Option(name: .customLong("remote-timeout"), help: "Seconds a remote image or video fetch may take, redirects and body included.") var remoteTimeout = 10.0
    @Option(name: .customLong("max-redirects"), help: "Redirects a remote fetch follows.") var maxRedirects = 5
    @Flag(name: .customLong("allow-private-addresses"), help: "With --allow-remote-images, also fetch from loopback, private and link-local addresses (only on a network whose every host you trust).")
    var allowPrivateAddresses = false
    @Option(name: .customLong("chat-history"), help: "Chat requests with system messages or earlier turns: reject (400) or last-user-message (use it only).")
    var chatHistory = "reject"

    func validate() throws {
        guard (0...65535).contains(port) else { throw ValidationError("--port must be 0 to 65535") }
        for (name, value) in [("--max-batch", maxBatch), ("--max-body-bytes", maxBodyBytes), ("--max-image-bytes", maxImageBytes),
                              ("--max-image-pixels", maxImagePixels), ("--max-images", maxImages), ("--max-video-bytes", maxVideoBytes),
                              ("--max-video-frames", maxVideoFrames), ("--max-frame-pixels", maxFramePixels), ("--max-prompt-tokens", maxPromptTokens),
                              ("--max-tokens-limit", maxTokensLimit), ("--default-max-tokens", defaultMaxTokens)] where value < 1 {
            throw ValidationError("\(name) must be at least 1")
        }
        guard prefillShare >= 0, prefillShare.isFinite else { throw ValidationError("--prefill-share must be >= 0") }
        guard maxQueue >= 0, visionCache >= 0 else { throw ValidationError("--max-queue and --vision-cache must be >= 0") }
        guard defaultMaxTokens <= maxTokensLimit else { throw ValidationError("--default-max-tokens is over --max-tokens-limit") }
        guard requestTimeout > 0, shutdownGrace >= 0, stallSeconds > 0 else {
            throw ValidationError("--request-timeout and --stall-seconds must be positive, --shutdown-grace >= 0")
        }
        guard remoteTimeout > 0, remoteTimeout.isFinite, maxRedirects >= 0 else {
            throw ValidationError("--remote-timeout must be positive and --max-redirects >= 0")
        }
        guard allowRemoteImages || !allowPrivateAddresses else { throw ValidationError("--allow-private-addresses needs --allow-remote-images") }
        guard ChatHistoryPolicy(rawValue: chatHistory) != nil else { throw ValidationError("--chat-history must be reject or last-user-message") }
        guard Quantization(rawValue: quantize) != nil else { throw ValidationError("--quantize must be none, int8 or int4") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        let (base, named) = splitAdapters()
        guard base.count <= 1 else { throw ValidationError("--adapter: at most one adapter without a name (applied to the base model); name the others NAME=DIR") }
        for (name, _) in named where name.isEmpty || name.contains(where: \.isWhitespace) {
            throw ValidationError("--adapter \(name)=...: the name must be non-empty, without spaces")
        }
        guard Set(named.map(\.name)).count == named.count else { throw ValidationError("--adapter: two adapters have the same name") }
    }

    /// `--adapter` values: plain folders (applied to the base) and NAME=DIR pairs (served).
    func splitAdapters() -> (base: [String], named: [(name: String, path: String)]) {
        var base: [String] = [], named: [(String, String)] = []
        for value in adapter {
            if let eq = value.firstIndex(of: "="), !FileManager.default.fileExists(atPath: value) {
                named.append((String(value[..<eq]), String(value[value.index(after: eq)...])))
            } else {
                base.append(value)
            }
        }
        return (base, named)
    }

    func run() async throws {
        do {
            var options = ServerOptions()
            options.host = host
            options.port = port
            options.modelID = modelID
            options.maxBatch = maxBatch
            options.maxQueue = maxQueue
            options.visionCacheEntries = visionCache
            options.prefillShare = prefillShare
            options.burstPrefill = burstPrefill
            options.maxBodyBytes = maxBodyBytes
            options.images = ImagePolicy(mediaRoot: try mediaRoot.map(Self.mediaRootPath), maxBytes: maxImageBytes, maxPixels: maxImagePixels,
                                         maxImages: maxImages, maxVideoBytes: maxVideoBytes, maxVideoFrames: maxVideoFrames,
                                         maxFramePixels: maxFramePixels,
                                         remote: RemoteMediaPolicy(enabled: allowRemoteImages, timeout: remoteTimeout, maxRedirects: maxRedirects,
                                                                   allowPrivateAddresses: allowPrivateAddresses))
            options.maxPromptTokens = maxPromptTokens
            options.maxTokensLimit = maxTokensLimit
            options.defaultMaxTokens = defaultMaxTokens
            options.requestTimeout = requestTimeout
            options.shutdownGrace = shutdownGrace
            options.stallSeconds = stallSeconds
            options.apiKeys = apiKey + (try apiKeyFile.map(Self.readKeys) ?? [])
            options.corsOrigin = corsOrigin
            options.chatHistory = ChatHistoryPolicy(rawValue: chatHistory) ?? .reject
            if let threads { Kernels.threads = threads }
            Kernels.useFrontEndPrecision(precision)

            let modelDirectory = try modelURL(model)
            let (base, named) = splitAdapters()
            let adapterDirectory = try base.first.map(modelURL)
            options.adapters = try named.map { NamedAdapter(name: $0.name, directory: try modelURL($0.path)) }
            let (strictness, quantization, vae, configKeys) = (configKeys.strictness, Quantization(rawValue: quantize) ?? .none, vae, configKeys)
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = .info
                return handler
            }
            let server = InferenceServer(options: options) {
                let pipeline = try PaliGemmaPipeline(directory: modelDirectory, configStrictness: strictness,
                                                     quantization: quantization, adapter: adapterDirectory)
                configKeys.warnAboutUnknownKeys(pipeline.model.config)
                let location = try MaskDecoder.locateCheckpoint(explicit: vae, modelDirectory: modelDirectory.path)
                return (pipeline, try location.path.map { try MaskDecoder(path: $0) })
            }
            let shownHost = host.contains(":") ? "[\(host)]" : host
            try await server.run { port in
                FileHandle.standardError.write(Data("paligemma: listening on http://\(shownHost):\(port)\n".utf8))
            }
        } catch {
            fail(error)
        }
    }

    static func mediaRootPath(_ path: String) throws -> String {
        let expanded = expandedPath(path)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: expanded, isDirectory: &isDirectory), isDirectory.boolValue,
              let real = URL(fileURLWithPath: expanded).resolvingSymlinksInPath().path.removingPercentEncoding else {
            throw PaliGemmaError.input("--media-root \(path) is not a folder")
        }
        return real
    }

    static func readKeys(_ path: String) throws -> [String] {
        guard let text = try? String(contentsOfFile: expandedPath(path), encoding: .utf8) else {
            throw PaliGemmaError.io(path: path, reason: "cannot read the API key file")
        }
        let keys = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
        guard !keys.isEmpty else { throw PaliGemmaError.input("the API key file \(path) holds no keys") }
        return keys
    }
}
