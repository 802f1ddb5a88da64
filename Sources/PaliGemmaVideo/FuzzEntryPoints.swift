import Foundation
import PaliGemmaImage

/// Video files held in memory as a fuzz target (see `PaliGemma.FuzzEntryPoints`): the custom
/// I/O of the C glue (reads and seeks over the bytes), the demuxers and decoders behind it, and
/// the sampling, under a small pixel budget.
public enum VideoFuzzEntryPoints {
    public static let targets: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
        ("video", video),
    ]

    static func video(_ bytes: [UInt8]) {
        let data = Data(bytes)
        _ = try? VideoReader.info(data: data, name: "fuzz")
        guard let clip = try? VideoReader.frames(data: data, name: "fuzz", sampling: FrameSampling(count: 3, stride: 2), maxPixels: 1 << 20)
        else { return }
        precondition(clip.frames.count == 3 && clip.indices.count == 3, "a clip without the frames asked for")
        for frame in clip.frames {
            precondition(frame.pixels.count == frame.width * frame.height * 3, "a frame's buffer does not match its size")
        }
    }
}
