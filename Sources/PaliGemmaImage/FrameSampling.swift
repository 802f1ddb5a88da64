// Which frames of a video a prompt gets (the decoding itself is PaliGemmaVideo's, with FFmpeg;
// the rule lives here so that the model library can name it without depending on FFmpeg).

/// Which frames a prompt gets: every `stride`-th frame, counted from the first frame at or after
/// `start` seconds, `count` of them (big_vision's readers with deterministic sampling: frames
/// start, start + stride, ...). A video with fewer frames than that gives the ones it has,
/// repeated in order until there are `count` (big_vision's `video_replicate_img`: tile, then
/// take the first `count`).
public struct FrameSampling: Sendable, Equatable {
    public var count: Int
    public var stride: Int
    public var start: Double

    public init(count: Int = 16, stride: Int = 9, start: Double = 0) {
        self.count = count
        self.stride = stride
        self.start = start
    }

    /// The most frames one prompt may ask for (4,096 frames are over a million image tokens, far
    /// past any PaliGemma's positions) and the largest stride: bounds that keep the frame
    /// arithmetic far from overflow.
    public static let maxCount = 4096
    public static let maxStride = 1_000_000

    /// What is wrong with the request (a count, stride or start out of range), or nil.
    public var problem: String? { fault?.reason }

    /// The member out of range ("frames", "stride" or "start", as requests name them) and why.
    public var fault: (member: String, reason: String)? {
        if count < 1 || count > Self.maxCount { return ("frames", "the frame count must be 1 to \(Self.maxCount) (got \(count))") }
        if stride < 1 || stride > Self.maxStride { return ("stride", "the stride must be 1 to \(Self.maxStride) (got \(stride))") }
        if !(start >= 0 && start.isFinite) { return ("start", "the start time must be 0 or more seconds (got \(start))") }
        return nil
    }

    /// The frame indices (counted from the start time) a video with `available` frames from
    /// there gives, in order; empty when it has none.
    public func indices(available: Int) -> [Int] {
        let picks = (0..<count).map { $0 * stride }.filter { $0 < available }
        guard !picks.isEmpty else { return [] }
        return (0..<count).map { picks[$0 % picks.count] }
    }
}
