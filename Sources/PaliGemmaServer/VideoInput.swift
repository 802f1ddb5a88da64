import Foundation
import PaliGemma
import PaliGemmaImage
import PaliGemmaVideo

/// A request's video: the file (a `data:` URL, or a path under the media root) and how its
/// frames are sampled (`FrameSampling`: 16 frames, every 9th, from 0 s unless the request says).
/// Given as the URL string itself, or as {"url": ..., "frames": 16, "stride": 9, "start": 0}.
struct VideoReference: Decodable, Sendable {
    var url: String
    var frames: Int?
    var stride: Int?
    var start: Double?

    init(url: String, frames: Int? = nil, stride: Int? = nil, start: Double? = nil) {
        self.url = url
        self.frames = frames
        self.stride = stride
        self.start = start
    }

    init(from decoder: Decoder) throws {
        if let s = try? decoder.singleValueContainer().decode(String.self) {
            self.init(url: s)
            return
        }
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(url: try c.decode(String.self, forKey: .url), frames: try c.decodeIfPresent(Int.self, forKey: .frames),
                  stride: try c.decodeIfPresent(Int.self, forKey: .stride), start: try c.decodeIfPresent(Double.self, forKey: .start))
    }

    enum CodingKeys: String, CodingKey { case url, frames, stride, start }

    var sampling: FrameSampling {
        let d = FrameSampling()
        return FrameSampling(count: frames ?? d.count, stride: stride ?? d.stride, start: start ?? d.start)
    }

    /// The sampling, or a 400 naming the member that is out of range (`field` is the video's).
    func checkedSampling(field: String) throws -> FrameSampling {
        let s = sampling
        guard let (member, reason) = s.fault else { return s }
        throw ServerError.badRequest("\(field).\(member): \(reason)", param: "\(field).\(member)", code: "bad_sampling")
    }
}

/// Turns a request's video into its frames, one `EngineImage` each, preprocessed like images.
/// Each frame's vision-cache key is the file's SHA-256 with the sampling and the frame's place,
/// so a second question about the same clip encodes nothing; when every frame is cached the
/// video is not decoded at all.
struct VideoInput {
    let policy: ImagePolicy
    let pipeline: PaliGemmaPipeline
    let cache: VisionCache
    /// Added to each frame's vision cache key (see `ImageInput.keySuffix`).
    var keySuffix = ""

    /// `sampling` is the video's, checked (`VideoReference.checkedSampling`).
    func load(_ video: VideoReference, sampling: FrameSampling, field: String) async throws -> [EngineImage] {
        let data = try await MediaBytes(kind: "video", maxBytes: policy.maxVideoBytes, policy: policy).load(video.url, field: field)
        let hash = SHA256.hash(data)
        let keys = (0..<sampling.count).map { "\(hash)#frames=\(sampling.count),stride=\(sampling.stride),start=\(sampling.start)#\($0)" + keySuffix }
        do {
            if keys.allSatisfy(cache.contains) {
                let info = try VideoReader.info(data: data, name: field)
                return keys.map { EngineImage(key: $0, width: info.width, height: info.height, pixels: nil) }
            }
            let clip = try VideoReader.frames(data: data, name: field, sampling: sampling, maxPixels: policy.maxFramePixels)
            return try zip(keys, clip.frames).map { key, frame in
                EngineImage(key: key, width: frame.width, height: frame.height,
                            pixels: cache.contains(key) ? nil : try pipeline.pixelValues(frame))
            }
        } catch let error as VideoError {
            if case .tooLarge = error {
                throw ServerError.tooLarge(error.localizedDescription, param: field, code: "video_frame_too_many_pixels")
            }
            throw ServerError.badRequest("\(field): the video cannot be used: \(error.reason)", param: field, code: "bad_video")
        }
    }
}
