import Foundation
import HTTPTypes
import PaliGemma

/// An error answered to the client, in OpenAI's error shape:
/// `{"error": {"message": ..., "type": ..., "param": ..., "code": ...}}`.
public struct ServerError: Error, Sendable, CustomStringConvertible {
    public var status: HTTPResponse.Status
    public var message: String
    /// The request field at fault (e.g. "messages[0].content"), when there is one.
    public var param: String?
    /// OpenAI's error type: invalid_request_error, authentication_error, server_error, ...
    public var type: String
    /// A short machine-readable reason (also the label of the rejected-requests metric).
    public var code: String
    /// Seconds the client should wait (503 only).
    public var retryAfter: Int?
    /// The method a path takes (405 only).
    public var allow: String?

    public init(_ status: HTTPResponse.Status, _ message: String, param: String? = nil, type: String? = nil,
                code: String, retryAfter: Int? = nil) {
        self.status = status
        self.message = message
        self.param = param
        self.type = type ?? (status.code >= 500 ? "server_error" : "invalid_request_error")
        self.code = code
        self.retryAfter = retryAfter
    }

    public var description: String { "\(status.code) \(code): \(message)" }

    static func badRequest(_ message: String, param: String? = nil, code: String = "invalid_request") -> ServerError {
        ServerError(.badRequest, message, param: param, code: code)
    }

    static func tooLarge(_ message: String, param: String? = nil, code: String) -> ServerError {
        ServerError(.contentTooLarge, message, param: param, code: code)
    }

    struct Body: Encodable {
        struct Detail: Encodable {
            let message: String
            let type: String
            let param: String?
            let code: String

            func encode(to encoder: Encoder) throws {
                var c = encoder.container(keyedBy: CodingKeys.self)
                try c.encode(message, forKey: .message)
                try c.encode(type, forKey: .type)
                try c.encode(param, forKey: .param)  // null when absent, as OpenAI writes it
                try c.encode(code, forKey: .code)
            }

            enum CodingKeys: String, CodingKey { case message, type, param, code }
        }

        let error: Detail
    }

    var body: Body { Body(error: .init(message: message, type: type, param: param, code: code)) }
}

extension DecodingError {
    /// The path of the field at fault, as "messages[0].content".
    var fieldPath: String? {
        let path: [CodingKey]
        switch self {
        case let .typeMismatch(_, c), let .valueNotFound(_, c), let .dataCorrupted(c): path = c.codingPath
        case let .keyNotFound(key, c): path = c.codingPath + [key]
        @unknown default: return nil
        }
        var out = ""
        for key in path {
            if let i = key.intValue { out += "[\(i)]" } else { out += (out.isEmpty ? "" : ".") + key.stringValue }
        }
        return out.isEmpty ? nil : out
    }

    /// A sentence for the client, naming the field.
    var clientMessage: String {
        let field = fieldPath.map { "'\($0)'" } ?? "the body"
        switch self {
        case let .typeMismatch(type, _): return "\(field) has the wrong type: expected \(Self.name(type))"
        case let .valueNotFound(type, _): return "\(field) is null: expected \(Self.name(type))"
        case .keyNotFound: return "\(field) is required"
        case let .dataCorrupted(c):
            return fieldPath == nil ? "the body is not valid JSON: \(c.debugDescription)" : "\(field): \(c.debugDescription)"
        @unknown default: return "the body could not be read"
        }
    }

    private static func name(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Int.Type: return "an integer"
        case is Double.Type, is Float.Type: return "a number"
        case is Bool.Type: return "a boolean"
        default:
            let n = "\(type)"
            if n.hasPrefix("Array") { return "an array" }
            if n.hasPrefix("Dictionary") { return "an object" }
            return "an object"
        }
    }
}
