import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import PaliGemmaJSON

/// Turns every error into OpenAI's error shape with the right status (a `ServerError` as it is,
/// Hummingbird's own errors such as 404 with their status, anything else as a 500 naming the
/// error) and counts responses and rejections.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics
    let logger: Logger

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let route = request.uri.path
        do {
            let response = try await next(request, context)
            metrics.responded(route: Self.metricRoute(route), status: response.status.code)
            return response
        } catch {
            var serverError = Self.serverError(for: error)
            // A served path asked with another method: 405 with the method it takes.
            if serverError.status == .notFound, let allowed = Routes.method(of: route), request.method != allowed {
                serverError = ServerError(.methodNotAllowed, "\(route) takes \(allowed.rawValue) only", code: "method_not_allowed")
                serverError.allow = allowed.rawValue
            }
            if serverError.status.code >= 500 && serverError.status != .serviceUnavailable {
                logger.error("request failed", metadata: ["path": .string(route), "error": .string("\(error)")])
            }
            if serverError.status.code != 404 { metrics.rejected(serverError.code) }
            metrics.responded(route: Self.metricRoute(route), status: serverError.status.code)
            return Self.response(for: serverError)
        }
    }

    static func serverError(for error: Error) -> ServerError {
        switch error {
        case let e as ServerError:
            return e
        case is NIOTooManyBytesError:
            return ServerError.tooLarge("the request body is over the server's limit", code: "body_too_large")
        case let e as HTTPError:
            let code = e.status == .notFound ? "not_found" : e.status == .methodNotAllowed ? "method_not_allowed" : "http_\(e.status.code)"
            let message = e.status == .notFound ? "no such route" : (e.body ?? e.status.reasonPhrase)
            return ServerError(e.status, message, code: code)
        case let e as any HTTPResponseError:
            return ServerError(e.status, "\(e)", code: "http_\(e.status.code)")
        default:
            return ServerError(.internalServerError, "internal error: \(error)", code: "internal_error")
        }
    }

    static func response(for error: ServerError) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        if let seconds = error.retryAfter { headers[.retryAfter] = String(seconds) }
        if let allow = error.allow { headers[.allow] = allow }
        if error.status == .unauthorized { headers[.wwwAuthenticate] = "Bearer" }
        let body = (try? JSONOutput.string(error.body)) ?? #"{"error":{"message":"error","type":"server_error","param":null,"code":"internal_error"}}"#
        return Response(status: error.status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body + "\n")))
    }

    /// The route label of the responses metric: known paths as they are, the rest as "other"
    /// (so that scanning random paths cannot grow the metric without bound).
    static func metricRoute(_ path: String) -> String { Routes.paths.contains(path) ? path : "other" }
}

/// `--api-key`: every route but the open ones needs `Authorization: Bearer <key>` or
/// `X-Api-Key: <key>`, compared in constant time.
struct APIKeyMiddleware<Context: RequestContext>: RouterMiddleware {
    let keys: [[UInt8]]
    let open: Set<String>

    init(keys: [String], open: Set<String>) {
        self.keys = keys.map { Array($0.utf8) }
        self.open = open
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !keys.isEmpty, !open.contains(request.uri.path), request.method != .options else {
            return try await next(request, context)
        }
        var given: String?
        if let auth = request.headers[.authorization], auth.lowercased().hasPrefix("bearer ") {
            given = String(auth.dropFirst(7)).trimmingCharacters(in: .whitespaces)
        } else if let key = request.headers[HTTPField.Name("X-Api-Key")!] {
            given = key
        }
        guard let given else {
            throw ServerError(.unauthorized, "an API key is required (Authorization: Bearer <key> or X-Api-Key)",
                              type: "authentication_error", code: "unauthorized")
        }
        let bytes = Array(given.utf8)
        var match = false
        for key in keys { match = Self.constantTimeEqual(key, bytes) || match }
        guard match else {
            throw ServerError(.unauthorized, "the API key is not valid", type: "authentication_error", code: "unauthorized")
        }
        return try await next(request, context)
    }

    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        var diff = UInt8(truncatingIfNeeded: a.count ^ b.count)
        for i in 0..<max(a.count, b.count) {
            diff |= (i < a.count ? a[i] : 0) ^ (i < b.count ? b[i] : 0)
        }
        return diff == 0
    }
}
