import Foundation
import PaliGemmaImage
@testable import PaliGemmaVideo
import Testing

/// Frames chosen and decoded from the test videos against PyAV's (scripts/make_video_fixtures.py):
/// the same indices under the same sampling rule, and RGB within a stated bound.
struct VideoReaderTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures")
    static func path(_ name: String) -> String { root.appendingPathComponent(name).path }

    /// The fixture's indices and RGB frames [F, H, W, 3], read without the main library (a
    /// safetensors file is an 8-byte header length, a JSON header, then the tensors).
    struct Reference {
        let file: String
        let sampling: FrameSampling
        let decoded: Int
        let indices: [Int]
        let rgb: [UInt8]
        let shape: [Int]

        init(_ name: String) throws {
            let data = try Data(contentsOf: VideoReaderTests.root.appendingPathComponent(name + ".safetensors"))
            let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            let header = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<8 + n)) as? [String: Any])
            let meta = try #require(header["__metadata__"] as? [String: String])
            file = meta["file"] ?? ""
            sampling = FrameSampling(count: Int(meta["count"] ?? "") ?? 0, stride: Int(meta["stride"] ?? "") ?? 0,
                                     start: Double(meta["start"] ?? "") ?? 0)
            decoded = Int(meta["decoded"] ?? "") ?? 0
            func tensor(_ key: String) throws -> (Data, [Int]) {
                let entry = try #require(header[key] as? [String: Any])
                let offsets = try #require(entry["data_offsets"] as? [Int])
                return (data.subdata(in: 8 + n + offsets[0]..<8 + n + offsets[1]), entry["shape"] as? [Int] ?? [])
            }
            let (ids, _) = try tensor("indices")
            indices = stride(from: 0, to: ids.count, by: 8).map { i in
                ids[ids.startIndex + i..<ids.startIndex + i + 8].enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
            }
            let (pixels, shape) = try tensor("rgb")
            rgb = [UInt8](pixels)
            self.shape = shape
        }
    }

    static let cases = ["h264-4x9", "h264-16x9", "h264-3x5-from-0.5s", "vp9-odd-5x4", "vfr-6x2-from-0.1s"]

    @Test("the frames chosen and their RGB equal PyAV's", arguments: cases)
    func framesEqualPyAV(name: String) throws {
        let ref = try Reference(name)
        let video = try VideoReader.frames(path: Self.path(ref.file), sampling: ref.sampling)
        #expect(video.indices == ref.indices, "\(name): \(video.indices) vs PyAV \(ref.indices)")
        #expect(video.frames.count == ref.sampling.count)
        if video.reachedEnd { #expect(video.decoded == ref.decoded, "\(name): \(video.decoded) frames from the start vs \(ref.decoded)") }
        #expect(video.replicated == (Set(ref.indices).count < ref.indices.count))
        var worst = 0, differing = 0, total = 0
        for (k, frame) in video.frames.enumerated() {
            #expect([frame.height, frame.width, 3] == Array(ref.shape.dropFirst()), "\(name) frame \(k): \(frame.width)x\(frame.height)")
            let size = frame.pixels.count
            guard (k + 1) * size <= ref.rgb.count else { continue }
            for (a, b) in zip(frame.pixels, ref.rgb[k * size..<(k + 1) * size]) {
                let d = abs(Int(a) - Int(b))
                worst = max(worst, d)
                if d > 0 { differing += 1 }
                total += 1
            }
        }
        print("[\(name)] indices \(video.indices); RGB against PyAV: worst |diff| \(worst), \(differing) of \(total) values differ")
        // Decoding is exact by the codec standards, and the YUV -> RGB conversion (swscale,
        // bilinear, BT.601 limited range) gives the same bytes with Debian's FFmpeg 5.1 as with
        // the 7.1 in PyAV's wheel: exact equality is asserted.
        #expect(worst == 0, "\(name): RGB differs from PyAV's by up to \(worst)")
    }

    @Test func infoDescribesTheStream() throws {
        let info = try VideoReader.info(path: Self.path("h264.mp4"))
        #expect(info.codec == "h264" && info.width == 64 && info.height == 48)
        #expect(abs(info.frameRate - 30) < 1e-6 && info.frameCount == 40)
        #expect(abs(info.duration - 40.0 / 30) < 0.05, "duration \(info.duration)")
        let odd = try VideoReader.info(path: Self.path("vp9-odd.webm"))
        #expect(odd.codec == "vp9" && odd.width == 63 && odd.height == 47)
        let rotated = try VideoReader.info(path: Self.path("rotated.mp4"))
        print("rotated.mp4: rotation \(rotated.rotation) degrees")
        #expect(abs(abs(rotated.rotation) - 90) < 1e-6)
        #expect(try VideoReader.info(path: Self.path("h264.mp4")).rotation == 0)
    }

    @Test("the sampling rule: every stride-th frame, repeated in order when the video is short")
    func samplingRule() {
        #expect(FrameSampling(count: 4, stride: 9).indices(available: 100) == [0, 9, 18, 27])
        #expect(FrameSampling(count: 4, stride: 9).indices(available: 28) == [0, 9, 18, 27])
        #expect(FrameSampling(count: 5, stride: 9).indices(available: 28) == [0, 9, 18, 27, 0])
        #expect(FrameSampling(count: 5, stride: 3).indices(available: 4) == [0, 3, 0, 3, 0])
        #expect(FrameSampling(count: 3, stride: 1).indices(available: 1) == [0, 0, 0])
        #expect(FrameSampling(count: 3, stride: 2).indices(available: 0) == [])
    }

    @Test("bad files and requests: a clear error naming the file, never a crash")
    func errors() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "no error" } catch { return (error as? LocalizedError)?.errorDescription ?? "\(error)" }
        }
        let missing = Self.path("nope.mp4")
        #expect(message { try VideoReader.frames(path: missing) } == "\(missing): no such file")
        #expect(message { try VideoReader.frames(path: Self.root.path) } == "\(Self.root.path): a folder, not a video file")
        let audio = Self.path("audio.m4a")
        #expect(message { try VideoReader.frames(path: audio) } == "\(audio): the file has no video stream")
        let text = Self.path("h264-4x9.safetensors")  // not a video
        #expect(message { try VideoReader.frames(path: text) }.hasPrefix("\(text): not a readable video file"))
        let noIndex = Self.path("no-index.mp4")
        let lost = message { try VideoReader.frames(path: noIndex) }
        print("no-index.mp4: \(lost)")
        #expect(lost.hasPrefix(noIndex + ": "))
        #expect(lost != "no error")
        // A file cut short: the frames before the cut decode; asking for more is an error.
        let truncated = Self.path("truncated.mp4")
        let cut = message { try VideoReader.frames(path: truncated, sampling: FrameSampling(count: 40, stride: 1)) }
        print("truncated.mp4, 40 frames: \(cut)")
        #expect(cut.hasPrefix(truncated + ": "))
        let early = try VideoReader.frames(path: truncated, sampling: FrameSampling(count: 2, stride: 1))
        #expect(early.indices == [0, 1])
        let late = message { try VideoReader.frames(path: Self.path("h264.mp4"), sampling: FrameSampling(count: 2, stride: 1, start: 60)) }
        #expect(late.contains("no frame at or after 60.0 s"), "\(late)")
        #expect(message { try VideoReader.frames(path: Self.path("h264.mp4"), sampling: FrameSampling(count: 0)) }
            == "the frame count must be 1 to 4096 (got 0)")
        #expect(message { try VideoReader.frames(path: Self.path("h264.mp4"), sampling: FrameSampling(count: 2, stride: 0)) }
            == "the stride must be 1 to 1000000 (got 0)")
        #expect(message { try VideoReader.frames(path: Self.path("h264.mp4"), sampling: FrameSampling(count: 2, start: -1)) }
            == "the start time must be 0 or more seconds (got -1.0)")
    }

    @Test("a video in memory gives the same frames as its file", arguments: cases)
    func memoryEqualsFile(name: String) throws {
        let ref = try Reference(name)
        let fromFile = try VideoReader.frames(path: Self.path(ref.file), sampling: ref.sampling)
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.path(ref.file)))
        let fromMemory = try VideoReader.frames(data: data, name: ref.file, sampling: ref.sampling)
        #expect(fromMemory.indices == fromFile.indices && fromMemory.decoded == fromFile.decoded)
        #expect(fromMemory.frames.map(\.pixels) == fromFile.frames.map(\.pixels), "\(name): frames differ between memory and file")
        #expect(try VideoReader.info(data: data, name: ref.file) == fromFile.info)
    }

    @Test func badVideosInMemoryAreErrorsNamingThem() throws {
        func message(_ body: () throws -> Any) -> String {
            do { _ = try body(); return "no error" } catch { return (error as? LocalizedError)?.errorDescription ?? "\(error)" }
        }
        func bytes(_ file: String) throws -> Data { try Data(contentsOf: URL(fileURLWithPath: Self.path(file))) }
        #expect(message { try VideoReader.frames(data: Data(), name: "empty") } == "empty: the video is empty")
        #expect(message { try VideoReader.frames(data: Data("not a video".utf8), name: "text") }.hasPrefix("text: not a readable video file"))
        #expect(message { try VideoReader.frames(data: try bytes("audio.m4a"), name: "audio") } == "audio: the file has no video stream")
        let cut = message { try VideoReader.frames(data: try bytes("truncated.mp4"), name: "cut", sampling: FrameSampling(count: 40, stride: 1)) }
        #expect(cut.hasPrefix("cut: ") && cut != "no error", "\(cut)")
        // Every prefix of a valid file is an error or some frames, never a crash.
        let whole = try bytes("h264.mp4")
        for length in stride(from: 1, to: whole.count, by: max(1, whole.count / 61)) {
            _ = try? VideoReader.frames(data: whole.prefix(length), name: "prefix", sampling: FrameSampling(count: 4, stride: 3))
        }
        // A frame over the pixel limit is refused before it is converted.
        #expect(message { try VideoReader.frames(data: whole, name: "big", maxPixels: 64 * 48 - 1) }
            == "big: a frame is 64x48 pixels, over the limit of 3071 pixels")
        #expect(try VideoReader.frames(data: whole, name: "fits", sampling: FrameSampling(count: 1), maxPixels: 64 * 48).frames.count == 1)
    }

    @Test func samplingBoundsKeepTheArithmeticSafe() {
        #expect(FrameSampling(count: FrameSampling.maxCount + 1).problem == "the frame count must be 1 to 4096 (got 4097)")
        #expect(FrameSampling(count: 16, stride: Int.max).problem == "the stride must be 1 to 1000000 (got \(Int.max))")
        #expect(FrameSampling(count: FrameSampling.maxCount, stride: FrameSampling.maxStride).problem == nil)
        #expect(FrameSampling(count: 3, stride: 2).indices(available: 3) == [0, 2, 0])
    }
}

