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

    public init(mediaRoot: String? = nil, maxBytes: Int = 10 << 20, maxPixels: Int = 50_000_000, maxImages: Int = 4) {
        self.mediaRoot = mediaRoot
        self.maxBytes = maxBytes
        self.maxPixels = maxPixels
        self.maxImages = maxImages
    }
}

/// Turns a request's image reference into an `EngineImage`: a `data:` URL (base64) always,
/// a local path (or file:// URL) only under the media root. Remote http(s) URLs are refused.
/// The file's bytes are hashed for the vision cache; on a hit nothing is decoded.
struct ImageInput {
    let policy: ImagePolicy
    let pipeline: PaliGemmaPipeline
    let cache: VisionCache

    func load(_ reference: String, field: String) throws -> EngineImage {
        let data = try bytes(of: reference, field: field)
        let key = SHA256.hash(data)
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

    private func bytes(of reference: String, field: String) throws -> Data {
        let lower = reference.prefix(16).lowercased()
        if lower.hasPrefix("data:") { return try dataURL(reference, field: field) }
        if lower.hasPrefix("http://") || lower.hasPrefix("https://") {
            throw ServerError.badRequest("\(field): remote image URLs are not fetched by this server; send the image as a data: URL (base64)",
                                         param: field, code: "remote_images_disabled")
        }
        var path = reference
        if lower.hasPrefix("file://") { path = URL(string: reference)?.path ?? String(reference.dropFirst(7)) }
        return try localFile(path, field: field)
    }

    private func dataURL(_ url: String, field: String) throws -> Data {
        try Self.dataURL(url, field: field, maxBytes: policy.maxBytes)
    }

    /// The bytes of `data:[<media type>];base64,<data>`, at most `maxBytes` of them.
    static func dataURL(_ url: String, field: String, maxBytes: Int) throws -> Data {
        guard let comma = url.firstIndex(of: ",") else {
            throw ServerError.badRequest("\(field): a data: URL needs a comma before its data", param: field, code: "bad_image")
        }
        let header = url[url.index(url.startIndex, offsetBy: 5)..<comma].lowercased()
        guard header.split(separator: ";").contains("base64") else {
            throw ServerError.badRequest("\(field): only base64 data: URLs are accepted (data:image/png;base64,...)", param: field, code: "bad_image")
        }
        let payload = url[url.index(after: comma)...]
        guard payload.utf8.count / 4 * 3 <= maxBytes + 3 else {
            throw ServerError.tooLarge("\(field): the image is over the server's limit of \(maxBytes) bytes", param: field, code: "image_too_large")
        }
        guard let data = Data(base64Encoded: String(payload), options: .ignoreUnknownCharacters), !data.isEmpty else {
            throw ServerError.badRequest("\(field): the data: URL's base64 is not valid", param: field, code: "bad_image")
        }
        guard data.count <= maxBytes else {
            throw ServerError.tooLarge("\(field): the image is \(data.count) bytes, over the server's limit of \(maxBytes)", param: field, code: "image_too_large")
        }
        return data
    }

    private func localFile(_ path: String, field: String) throws -> Data {
        guard let given = policy.mediaRoot else {
            throw ServerError.badRequest("\(field): local image paths are not allowed (the server was started without --media-root); send a data: URL",
                                         param: field, code: "local_images_disabled")
        }
        let root = realPath(given) ?? given
        let joined = path.hasPrefix("/") ? path : root + "/" + path
        guard let resolved = realPath(joined) else {
            throw ServerError.badRequest("\(field): no such image under the media root", param: field, code: "image_not_found")
        }
        guard resolved == root || resolved.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw ServerError(.forbidden, "\(field): the image is outside the media root", param: field, code: "image_outside_media_root")
        }
        var info = stat()
        guard stat(resolved, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw ServerError.badRequest("\(field): the path is not a regular file", param: field, code: "image_not_found")
        }
        guard Int(info.st_size) <= policy.maxBytes else {
            throw ServerError.tooLarge("\(field): the image is \(info.st_size) bytes, over the server's limit of \(policy.maxBytes)",
                                       param: field, code: "image_too_large")
        }
        guard let data = FileManager.default.contents(atPath: resolved) else {
            throw ServerError.badRequest("\(field): the image cannot be read", param: field, code: "image_not_found")
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
