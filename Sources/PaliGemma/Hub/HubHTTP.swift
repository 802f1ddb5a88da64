import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One HTTP response. Header names are lower-cased.
struct HubHTTPResponse: Sendable {
    let status: Int
    let url: URL
    let headers: [String: String]
    /// The body of a non-2xx response (truncated), or of a 2xx response when no sink was given.
    let body: Data

    func header(_ name: String) -> String? { headers[name.lowercased()] }

    /// The `Location` of a 3xx response, resolved against the request URL.
    var redirectLocation: URL? {
        guard (300..<400).contains(status), let location = header("location") else { return nil }
        return URL(string: location, relativeTo: url)?.absoluteURL
    }

    /// A short text for error messages: the hub's `X-Error-Message` header, else the body's start.
    var errorMessage: String {
        if let m = header("x-error-message"), !m.isEmpty { return m }
        return String(decoding: body.prefix(300), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Receives the body of a 2xx response as it arrives (on URLSession's delegate queue).
protocol HubBodySink: AnyObject {
    /// Headers are in; throw to abort the transfer.
    func begin(_ response: HubHTTPResponse) throws
    func write(_ data: Data) throws
}

/// How a transfer failed below HTTP: the connection, or the sink (a disk error).
enum HubTransportError: Error {
    case connection(String)
    case sink(Error)
}

/// A small synchronous HTTP client over URLSession (FoundationNetworking on Linux). It never
/// follows redirects itself: callers do, so that they decide which headers go to which host.
struct HubHTTPClient: Sendable {
    static let unknownHost = "cannot resolve host"
    /// A transfer with no new bytes for this long is abandoned.
    var idleTimeout: TimeInterval = 60
    var userAgent = "paligemma-swift/1 (+huggingface_hub-compatible)"

    /// Sends one request and waits for its end. With a sink, a 2xx body goes to the sink;
    /// anything else is collected in `body` (at most 1 MiB).
    func send(method: String, url: URL, headers: [String: String], sink: HubBodySink? = nil) throws(HubTransportError) -> HubHTTPResponse {
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 7 * 24 * 3600          // our own idle watchdog applies instead
        request.setValue(userAgent, forHTTPHeaderField: "User-Agent")
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }

        let configuration = URLSessionConfiguration.ephemeral
        configuration.timeoutIntervalForRequest = 7 * 24 * 3600
        configuration.timeoutIntervalForResource = 30 * 24 * 3600
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        let delegate = TransferDelegate(sink: sink)
        let session = URLSession(configuration: configuration, delegate: delegate, delegateQueue: queue)
        defer { session.finishTasksAndInvalidate() }
        let task = session.dataTask(with: request)
        task.resume()

        // Wait for completion, abandoning a transfer that stalls (bounded: each wait is 0.25 s and
        // ends the loop once idleTimeout passes without progress).
        var lastProgress = Date()
        var lastCount: Int64 = -1
        while delegate.done.wait(timeout: .now() + 0.25) == .timedOut {
            let count = delegate.progressCount
            if count != lastCount {
                lastCount = count
                lastProgress = Date()
            } else if Date().timeIntervalSince(lastProgress) > idleTimeout {
                delegate.markStalled()
                task.cancel()
                _ = delegate.done.wait(timeout: .now() + 5)
                let seconds = idleTimeout == idleTimeout.rounded() ? "\(Int(idleTimeout))" : "\(idleTimeout)"
                throw .connection("no data for \(seconds) s")
            }
        }
        return try delegate.result(url: url)
    }
}

/// Collects one task's response. All state is guarded by `lock`; URLSession calls in on its
/// (serial) delegate queue while `send` polls from the caller's thread.
private final class TransferDelegate: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let done = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private let sink: HubBodySink?
    private var response: HubHTTPResponse?
    private var body = Data()
    private var sinking = false
    private var received: Int64 = 0
    private var failure: HubTransportError?
    private var stalled = false
    private static let bodyLimit = 1 << 20

    init(sink: HubBodySink?) { self.sink = sink }

    var progressCount: Int64 { lock.withLock { received } }

    func markStalled() { lock.withLock { stalled = true } }

    func result(url: URL) throws(HubTransportError) -> HubHTTPResponse {
        let (response, body, failure) = lock.withLock { (self.response, self.body, self.failure) }
        if let failure { throw failure }
        guard let response else { throw .connection("no response") }
        return HubHTTPResponse(status: response.status, url: response.url, headers: response.headers, body: body)
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                    newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void) {
        completionHandler(nil)   // the caller follows redirects itself
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                    completionHandler: @escaping @Sendable (URLSession.ResponseDisposition) -> Void) {
        record(response)
        completionHandler(lock.withLock { failure == nil } ? .allow : .cancel)
    }

    private func record(_ response: URLResponse) {
        guard let http = response as? HTTPURLResponse else { return }
        let already = lock.withLock { self.response != nil }
        guard !already else { return }
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            if let k = key as? String, let v = value as? String { headers[k.lowercased()] = v }
        }
        let r = HubHTTPResponse(status: http.statusCode, url: http.url ?? URL(fileURLWithPath: "/"), headers: headers, body: Data())
        var startSink = false
        lock.withLock {
            self.response = r
            if sink != nil && (200..<300).contains(r.status) { sinking = true; startSink = true }
        }
        if startSink, let sink {
            do { try sink.begin(r) } catch { fail(.sink(error)) }
        }
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        if lock.withLock({ response == nil }), let r = dataTask.response { record(r) }
        let (toSink, failed) = lock.withLock { () -> (Bool, Bool) in
            received += Int64(data.count)
            if !sinking && body.count < Self.bodyLimit { body.append(data.prefix(Self.bodyLimit - body.count)) }
            return (sinking, failure != nil)
        }
        if failed { dataTask.cancel(); return }
        guard toSink, let sink else { return }
        do { try sink.write(data) } catch { fail(.sink(error)); dataTask.cancel() }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if let error {
            let reason = lock.withLock { stalled } ? "stalled" : Self.describe(error)
            fail(.connection(reason))
        } else if lock.withLock({ response == nil }), let r = task.response {
            record(r)
        }
        done.signal()
    }

    private func fail(_ error: HubTransportError) {
        lock.withLock { if failure == nil { failure = error } }
    }

    private static func describe(_ error: Error) -> String {
        if let e = error as? URLError {
            switch e.code {
            case .networkConnectionLost: return "connection lost mid-transfer"
            case .cannotConnectToHost: return "cannot connect to host"
            case .cannotFindHost: return HubHTTPClient.unknownHost
            case .timedOut: return "timed out"
            case .notConnectedToInternet: return "not connected to the internet"
            default: return e.localizedDescription
            }
        }
        return error.localizedDescription
    }
}
