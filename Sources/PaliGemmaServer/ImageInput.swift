import Foundation
import PaliGemma
#if canImport(Glibc)
import Glibc
#endif

/// Where request images may come from, and how big they may be.
public struct ImagePolicy: Sendable {
    /// Local paths are allowed only under this folder (its real path; links resolved first).
    public var mediaRoot: String?
    /// Bytes of one image file.
    public var maxBytes: Int
    /// Pixels of one image (width x height), checked from its header before decoding.
    public var maxPixels: Int
    /// Images in one request (each adds the model's image tokens to the prompt).
    public var maxImages: Int
    /// Bytes of one video file.
    public var maxVideoBytes: Int
    /// Frames taken from the videos of one request, all together (each frame adds the model's
    /// image tokens to the prompt, like an image).
    public var maxVideoFrames: Int
    /// Pixels of one video frame, checked before it is converted to RGB.
    public var maxFramePixels: Int
    /// http(s) URLs: refused unless enabled (`--allow-remote-images`), then public addresses only.
    public var remote: RemoteMediaPolicy

    public init(mediaRoot: String? = nil, maxBytes: Int = 10 << 20, maxPixels: Int = 50_000_000, maxImages: Int = 4,
                maxVideoBytes: Int = 16 << 20, maxVideoFrames: Int = 16, maxFramePixels: Int = 3840 * 2160,
                remote: RemoteMediaPolicy = RemoteMediaPolicy()) {
        self.mediaRoot = mediaRoot
        self.maxBytes = maxBytes
        self.maxPixels = maxPixels
        self.maxImages = maxImages
        self.maxVideoBytes = maxVideoBytes
        self.maxVideoFrames = maxVideoFrames
        self.maxFramePixels = maxFramePixels
        self.remote = remote
    }
}

/// Turns a request's image reference into an `EngineImage`: a `data:` URL (base64) always,
/// a local path (or file:// URL) only under the media root, an http(s) URL only as the remote
/// policy allows.
/// The file's bytes are hashed for the vision cache; on a hit nothing is decoded.
struct ImageInput {
    let policy: ImagePolicy
    let pipeline: PaliGemmaPipeline
    let cache: VisionCache
    /// Added to the vision cache key: the served adapter's name when it adapts the vision tower.
    var keySuffix = ""

    func load(_ reference: String, field: String) async throws -> EngineImage {
        let data = try await MediaBytes(kind: "image", maxBytes: policy.maxBytes, policy: policy).load(reference, field: field)
        let key = SHA256.hash(data) + keySuffix
        let probe: (format: ImageFormat, width: Int, height: Int)
        do {
            probe = try ImageDecoder.probe(data: data, name: field)
        } catch {
            throw ServerError.badRequest("\(field): the image cannot be read: \(error)", param: field, code: "bad_image")
        }
        guard probe.width > 0, probe.height > 0 else {
            throw ServerError.badRequest("\(field): the image has no pixels", param: field, code: "bad_image")
        }
        guard probe.width.multipliedReportingOverflow(by: probe.height).partialValue <= policy.maxPixels,
              probe.width <= 1 << 20, probe.height <= 1 << 20 else {
            throw ServerError.tooLarge("\(field): the image is \(probe.width)x\(probe.height) pixels, over the server's limit of \(policy.maxPixels) pixels",
                                       param: field, code: "image_too_many_pixels")
        }
        if cache.contains(key) {
            return EngineImage(key: key, width: probe.width, height: probe.height, pixels: nil)
        }
        do {
            let image = try ImageDecoder.decode(data: data, name: field, options: DecodeOptions(maxPixels: policy.maxPixels))
            return EngineImage(key: key, width: image.width, height: image.height, pixels: try pipeline.pixelValues(image))
        } catch {
            throw ServerError.badRequest("\(field): the image cannot be decoded: \(error)", param: field, code: "bad_image")
        }
    }

    /// The bytes of `data:[<media type>];base64,<data>`, at most `maxBytes` of them.
    static func dataURL(_ url: String, field: String, maxBytes: Int) throws -> Data {
        try MediaBytes(kind: "image", maxBytes: maxBytes, policy: ImagePolicy()).dataURL(url, field: field)
    }
}

/// A request's image or video file: from a `data:` URL (base64) always, from a local path (or
/// file:// URL) only under the media root, from an http(s) URL only as `RemoteFetch` allows;
/// at most `maxBytes`. Errors name the request's field, with codes by kind (`bad_image`,
/// `video_too_large`, ...).
struct MediaBytes {
    /// "image" or "video".
    let kind: String
    let maxBytes: Int
    let policy: ImagePolicy
    var mediaRoot: String? { policy.mediaRoot }

    func load(_ reference: String, field: String) async throws -> Data {
        let lower = reference.prefix(16).lowercased()
        if lower.hasPrefix("data:") { return try dataURL(reference, field: field) }
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            return try await RemoteFetch(policy: policy.remote, kind: kind, maxBytes: maxBytes).fetch(reference, field: field)
        }
        var path = reference
        if lower.hasPrefix("file://") { path = URL(string: reference)?.path ?? String(reference.dropFirst(7)) }
        return try localFile(path, field: field)
    }

    func dataURL(_ url: String, field: String) throws -> Data {
        guard let comma = url.firstIndex(of: ",") else {
            throw ServerError.badRequest("\(field): a data: URL needs a comma before its data", param: field, code: "bad_\(kind)")
        }
        let header = url[url.index(url.startIndex, offsetBy: 5)..<comma].lowercased()
        guard header.split(separator: ";").contains("base64") else {
            throw ServerError.badRequest("\(field): only base64 data: URLs are accepted (data:\(kind == "image" ? "image/png" : "video/mp4");base64,...)",
                                         param: field, code: "bad_\(kind)")
        }
        let payload = url[url.index(after: comma)...]
        guard payload.utf8.count / 4 * 3 <= maxBytes + 3 else {
            throw ServerError.tooLarge("\(field): the \(kind) is over the server's limit of \(maxBytes) bytes", param: field, code: "\(kind)_too_large")
        }
        guard let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw ServerError.badRequest("\(field): the data: URL's base64 is not valid", param: field, code: "bad_\(kind)")
        }
        guard data.count <= maxBytes else {
            throw ServerError.tooLarge("\(field): the \(kind) is \(data.count) bytes, over the server's limit of \(maxBytes)",
                                       param: field, code: "\(kind)_too_large")
        }
        return data
    }

    private func localFile(_ path: String, field: String) throws -> Data {
        guard let given = mediaRoot else {
            throw ServerError.badRequest("\(field): local \(kind) paths are not allowed (the server was started without --media-root); send a data: URL",
                                         param: field, code: "local_\(kind)s_disabled")
        }
        let root = realPath(given) ?? given
        let joined = path.hasPrefix("/") ? path : root + "/" + path
        guard let resolved = realPath(joined) else {
            throw ServerError.badRequest("\(field): no such \(kind) under the media root", param: field, code: "\(kind)_not_found")
        }
        guard resolved == root || resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw ServerError(.forbidden, "\(field): the \(kind) is outside the media root", param: field, code: "\(kind)_outside_media_root")
        }
        var info = stat()
        guard stat(resolved, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw ServerError.badRequest("\(field): the path is not a regular file", param: field, code: "\(kind)_not_found")
        }
        guard Int(info.st_size) <= maxBytes else {
            throw ServerError.tooLarge("\(field): the \(kind) is \(info.st_size) bytes, over the server's limit of \(maxBytes)",
                                       param: field, code: "\(kind)_too_large")
        }
        guard let data = FileManager.default.contents(atPath: resolved) else {
            throw ServerError.badRequest("\(field): the \(kind) cannot be read", param: field, code: "\(kind)_not_found")
        }
        return data
    }
}

/// The canonical path with every link resolved (realpath(3)); nil when it does not exist.
func realPath(_ path: String) -> String? {
    guard let p = realpath(path, nil) else { return nil }
    defer { free(p) }
    return String(cString: p)
}
