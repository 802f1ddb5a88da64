// Calls into the C codec glue and turns its status codes into `ImageError`s.
import CImageCodecs

enum CodecCall {
    /// Runs `body` with an error-message buffer and throws if it returns nonzero.
    static func run(name: String, what: String, _ body: (UnsafeMutablePointer<CChar>) -> Int32) throws {
        var message = [CChar](repeating: 0, count: Int(PGC_ERRLEN) + 1)
        let rc = message.withUnsafeMutableBufferPointer { buffer -> Int32 in
            guard let base = buffer.baseAddress else { return Int32(PGC_ERR_MEMORY) }
            return body(base)
        }
        guard rc != PGC_OK else { return }
        let text = String(decoding: message.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let reason = "\(what): " + (text.isEmpty ? "unknown error (code \(rc))" : text)
        switch Int(rc) {
        case Int(PGC_ERR_TRUNCATED): throw ImageError.truncated(file: name, reason: reason)
        case Int(PGC_ERR_UNSUPPORTED): throw ImageError.unsupportedFormat(file: name, reason: reason)
        default: throw ImageError.corrupt(file: name, reason: reason)
        }
    }
}

extension Array where Element == UInt8 {
    /// An array of `count` bytes whose contents `body` fills (no zero-fill first). If
    /// `body` throws, the error propagates and the buffer is discarded.
    static func filled(count: Int, _ body: (UnsafeMutableBufferPointer<UInt8>) throws -> Void) throws -> [UInt8] {
        var failure: Error?
        let result = [UInt8](unsafeUninitializedCapacity: count) { buffer, initialized in
            do {
                try body(buffer)
                initialized = count
            } catch {
                failure = error
                initialized = 0
            }
        }
        if let failure { throw failure }
        return result
    }
}
