import Foundation

/// Every error the library throws. Each case names the file, tensor or key it is about and
/// says what was expected, so that a message alone tells the user what to fix.
public enum PaliGemmaError: Error, Equatable, CustomStringConvertible {
    /// A file could not be opened, read or mapped.
    case io(path: String, reason: String)
    /// A safetensors file (or its index) is malformed.
    case safetensors(path: String, tensor: String?, reason: String)
    /// `config.json` (or another JSON file) is malformed, has a wrong value or an unknown key.
    case config(path: String, key: String?, reason: String)
    /// `config.json` asks for something this runtime does not implement (weights quantized by
    /// another tool, another architecture, scaled rotary embeddings, ...): `key` says what.
    case unsupportedConfig(path: String, key: String, reason: String)
    /// A checkpoint tensor is missing, unexpected, misshapen or of an unsupported dtype.
    case weights(tensor: String, reason: String)
    /// A .npy file or .npz archive (or one of its members) is malformed or unsupported.
    case npz(path: String, member: String?, reason: String)
    /// The caller's inputs (ids, pixels, lengths) do not fit the model.
    case input(String)
    /// Finding a model in the hub cache or downloading it failed (see `HubError`).
    case hub(HubError)

    public var description: String {
        switch self {
        case let .io(path, reason):
            return "\(path): \(reason)"
        case let .safetensors(path, tensor, reason):
            if let tensor { return "\(path): tensor '\(tensor)': \(reason)" }
            return "\(path): \(reason)"
        case let .config(path, key, reason):
            if let key { return "\(path): '\(key)': \(reason)" }
            return "\(path): \(reason)"
        case let .unsupportedConfig(path, key, reason):
            return "\(path): '\(key)': not supported: \(reason)"
        case let .npz(path, member, reason):
            if let member { return "\(path): member '\(member)': \(reason)" }
            return "\(path): \(reason)"
        case let .weights(tensor, reason):
            return "tensor '\(tensor)': \(reason)"
        case let .input(reason):
            return reason
        case let .hub(error):
            return error.description
        }
    }
}

extension PaliGemmaError: LocalizedError {
    public var errorDescription: String? { description }
}
