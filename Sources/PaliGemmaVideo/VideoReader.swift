import CVideoCodec
internal import CFFmpeg  // for its link directives: the C glue calls FFmpeg
import Foundation
import PaliGemmaImage

// Frames from video files for prompts over several images (PaliGemma's video transfers: each
// frame goes through SigLIP on its own; their tokens form one prefix). Decoding is FFmpeg's
// (libavformat + libavcodec, one thread, frames in presentation order); each chosen frame is
// converted to RGB24 by swscale the way PyAV's `to_ndarray(format="rgb24")` does it (bilinear,
// the frame's colour matrix and range, BT.601 limited range when the file says nothing). The
// frames are then preprocessed exactly like images. Rotation metadata is reported, not applied
// (as PyAV and the image decoders' default leave EXIF orientation alone).

/// A video file that cannot be used, with the file and the reason.
public enum VideoError: Error, LocalizedError, Equatable, Sendable {
    /// Not found, not a video, no video stream, no decoder.
    case unreadable(path: String, reason: String)
    /// Decoding stopped with an error before the frames asked for were reached.
    case damaged(path: String, afterFrames: Int, reason: String)
    /// The stream holds no frame at or after the start time.
    case noFrames(path: String, reason: String)
    /// A sampling request that cannot be met (frame count, stride, start).
    case invalidSampling(String)
    /// A frame with more pixels than the caller allows.
    case tooLarge(path: String, width: Int, height: Int, maxPixels: Int)

    public var errorDescription: String? {
        switch self {
        case .invalidSampling: return reason
        case let .unreadable(path, _), let .damaged(path, _, _), let .noFrames(path, _), let .tooLarge(path, _, _, _): return "\(path): \(reason)"
        }
    }

    /// What is wrong, without the file's name.
    public var reason: String {
        switch self {
        case let .unreadable(_, reason), let .noFrames(_, reason), let .invalidSampling(reason): return reason
        case let .damaged(_, n, reason): return "\(reason) after \(n) decoded frame\(n == 1 ? "" : "s")"
        case let .tooLarge(_, w, h, limit): return "a frame is \(w)x\(h) pixels, over the limit of \(limit) pixels"
        }
    }
}

extension FrameSampling {
    /// Throws `VideoError.invalidSampling` for a count, stride or start out of range.
    public func validate() throws {
        if let problem { throw VideoError.invalidSampling(problem) }
    }
}

/// What a video file says about itself.
public struct VideoInfo: Sendable, Equatable {
    public var codec: String
    public var width: Int
    public var height: Int
    /// Average frames per second (0 when unknown).
    public var frameRate: Double
    /// Frames the container says it holds (0 when it does not say).
    public var frameCount: Int
    public var duration: Double
    /// Degrees counter-clockwise the display matrix asks for (not applied to the frames).
    public var rotation: Double
}

/// Frames chosen from a video, ready to be preprocessed like images.
public struct VideoFrames: Sendable {
    public var info: VideoInfo
    /// `sampling.count` frames, in prompt order.
    public var frames: [RGBImage]
    /// Each frame's index among the frames at or after the start time.
    public var indices: [Int]
    /// Each frame's presentation time in seconds (NaN when the file gives none).
    public var times: [Double]
    /// Frames at or after the start time that were decoded (decoding stops after the last one
    /// needed), and whether the end of the stream was reached.
    public var decoded: Int
    public var reachedEnd: Bool
    /// Whether the video had fewer frames than asked for, so that frames repeat.
    public var replicated: Bool { Set(indices).count < indices.count }
}

public enum VideoReader {
    /// The stream's description, without decoding frames.
    public static func info(path: String) throws -> VideoInfo {
        let handle = try open(path)
        defer { pg_video_close(handle) }
        return describe(handle)
    }

    /// Decodes `path` and returns the frames `sampling` chooses (see `FrameSampling`). Frames of
    /// more than `maxPixels` pixels (width x height) are refused before they are converted.
    public static func frames(path: String, sampling: FrameSampling = FrameSampling(), maxPixels: Int? = nil) throws -> VideoFrames {
        try sampling.validate()
        let handle = try open(path)
        defer { pg_video_close(handle) }
        return try decode(handle, name: path, sampling: sampling, maxPixels: maxPixels)
    }

    /// The same for a video file's bytes held in memory (`name` is what errors call it).
    public static func frames(data: Data, name: String, sampling: FrameSampling = FrameSampling(), maxPixels: Int? = nil) throws -> VideoFrames {
        try sampling.validate()
        return try data.withUnsafeBytes { bytes in
            let handle = try open(bytes, name: name)
            defer { pg_video_close(handle) }
            return try decode(handle, name: name, sampling: sampling, maxPixels: maxPixels)
        }
    }

    /// The stream's description of a video file's bytes, without decoding frames.
    public static func info(data: Data, name: String) throws -> VideoInfo {
        try data.withUnsafeBytes { bytes in
            let handle = try open(bytes, name: name)
            defer { pg_video_close(handle) }
            return describe(handle)
        }
    }

    static func decode(_ handle: OpaquePointer, name: String, sampling: FrameSampling, maxPixels: Int?) throws -> VideoFrames {
        let info = describe(handle)
        let last = (sampling.count - 1) * sampling.stride  // the furthest index that can be needed (bounded by `validate`)
        var kept: [Int: (RGBImage, Double)] = [:]
        var index = 0, reachedEnd = false
        var error = [CChar](repeating: 0, count: 256)
        while index <= last {
            var time = Double.nan
            var width: Int32 = 0, height: Int32 = 0
            let rc = pg_video_next(handle, &time, &width, &height, &error, error.count)
            if rc == 0 { reachedEnd = true; break }
            if rc < 0 { throw VideoError.damaged(path: name, afterFrames: index, reason: message(error)) }
            if !time.isNaN && time < sampling.start - 1e-9 { continue }  // before the start time
            defer { index += 1 }
            guard index % sampling.stride == 0 else { continue }
            let w = Int(width), h = Int(height)
            if let maxPixels, w * h > maxPixels {
                throw VideoError.tooLarge(path: name, width: w, height: h, maxPixels: maxPixels)
            }
            var rgb = [UInt8](repeating: 0, count: w * h * 3)
            let converted = rgb.withUnsafeMutableBufferPointer { pg_video_rgb(handle, $0.baseAddress, $0.count, &error, error.count) }
            if converted < 0 { throw VideoError.damaged(path: name, afterFrames: index, reason: message(error)) }
            kept[index] = (try RGBImage(width: w, height: h, pixels: rgb), time)
        }
        let chosen = sampling.indices(available: index)
        guard !chosen.isEmpty else {
            throw VideoError.noFrames(path: name, reason: sampling.start > 0
                ? "no frame at or after \(sampling.start) s (the video lasts \(String(format: "%.3f", info.duration)) s)"
                : "the video stream holds no decodable frame")
        }
        var frames: [RGBImage] = [], times: [Double] = []
        for i in chosen {
            guard let (image, time) = kept[i] else { throw VideoError.noFrames(path: name, reason: "frame \(i) was not kept") }
            frames.append(image)
            times.append(time)
        }
        return VideoFrames(info: info, frames: frames, indices: chosen, times: times, decoded: index, reachedEnd: reachedEnd)
    }

    static func open(_ bytes: UnsafeRawBufferPointer, name: String) throws -> OpaquePointer {
        var error = [CChar](repeating: 0, count: 256)
        guard let base = bytes.baseAddress, bytes.count > 0 else { throw VideoError.unreadable(path: name, reason: "the video is empty") }
        guard let handle = pg_video_open_memory(base.assumingMemoryBound(to: UInt8.self), bytes.count, &error, error.count) else {
            throw VideoError.unreadable(path: name, reason: message(error))
        }
        return handle
    }

    static func open(_ path: String) throws -> OpaquePointer {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw VideoError.unreadable(path: path, reason: "no such file")
        }
        guard !isDirectory.boolValue else { throw VideoError.unreadable(path: path, reason: "a folder, not a video file") }
        var error = [CChar](repeating: 0, count: 256)
        guard let handle = pg_video_open(path, &error, error.count) else {
            throw VideoError.unreadable(path: path, reason: message(error))
        }
        return handle
    }

    static func describe(_ handle: OpaquePointer) -> VideoInfo {
        VideoInfo(codec: String(cString: pg_video_codec(handle)), width: Int(pg_video_width(handle)),
                  height: Int(pg_video_height(handle)), frameRate: pg_video_frame_rate(handle),
                  frameCount: Int(pg_video_frame_count(handle)), duration: pg_video_duration(handle),
                  rotation: pg_video_rotation(handle))
    }

    static func message(_ buffer: [CChar]) -> String {
        let bytes = buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }
        return String(decoding: bytes, as: UTF8.self)
    }
}
