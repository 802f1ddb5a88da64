import Foundation

/// The physical limits of one benchmark run on this machine: the time below which no
/// implementation can go, from measured memory bandwidth and FMA peak. Stable JSON keys.
///
/// - decode reads every decoder matrix and the output projection once per token, in the dtype
///   they are held in (int8 or 4-bit + scales, or as stored): floor = those bytes / read bandwidth.
/// - prefill and vision are matrix multiplies: floor = their multiply-add FLOPs (matrices plus
///   attention's two products) / float32 FMA peak. Norms, activations and softmax are left out.
///   The prefill counts the work it needs: the last decoder layer's queries, output projection
///   and MLP for the prompt's last row only (as `PaliGemmaModel.forward` runs it).
/// - With `fast` precision on a CPU with a bf16 kernel, the matrices run on its instruction
///   (tdpbf16ps or vdpbf16ps): the `bf16_*` floors divide the same FLOPs by its measured peak.
/// - With exact products, int8 and 4-bit matrices run on integer dot products (int8: vpmaddwd,
///   or vpdpwssd with VNNI; 4-bit: vpmaddubsw, or vpdpbusd): the `integer_*` floors put each
///   matrix's FLOPs (`*_work` splits them by weight form) at the peak of its instruction, the
///   float matrices and attention at the FMA peak.
///
/// A probe shares the machine with whatever else runs on the host, so it can only come out too
/// low: `bench` probes before and after its timed runs and keeps the best of each (on the 2-core
/// Zen 3 VM the FMA peak measured 93 and 187 GFLOP/s minutes apart). Every probe's value is in
/// the JSON (`*_probes`).
public struct BenchmarkFloors: Codable, Sendable {
    // The machine's limits and the floors that follow from them: set together by `setLimits`.
    public var readBandwidthGBs = 0.0
    public var fmaPeakGFLOPs = 0.0
    /// Every probe taken, in order; the best of each is the value used.
    public var readBandwidthProbes: [Double]
    public var fmaPeakProbes: [Double]
    /// The fast kernel measured ("amx-bf16", "avx512-bf16", or "none") and its peak (0 for none).
    public var bf16Kernel: String
    public var bf16PeakGFLOPs = 0.0
    public var bf16PrefillFloorSeconds = 0.0
    public var bf16VisionFloorSeconds = 0.0
    public var decodeBytesPerToken: Int
    public var decodeFloorMs = 0.0
    public var prefillFLOPs: Double
    public var prefillFloorSeconds = 0.0
    public var visionFLOPs: Double
    public var visionFloorSeconds = 0.0
    /// The integer instructions of the int8 and 4-bit kernels here and their peaks (GOP/s, 0 when
    /// not measured), and the floors with each matrix at its own instruction's peak (0 for a model
    /// without integer matrices).
    public var int8DotInstruction: String
    public var int8DotPeakGOPs = 0.0
    public var int4DotInstruction: String
    public var int4DotPeakGOPs = 0.0
    public var integerPrefillFloorSeconds = 0.0
    public var integerVisionFloorSeconds = 0.0
    public var prefillWork: StageFLOPs
    public var visionWork: StageFLOPs

    /// A stage's FLOPs by the arithmetic they run in: matrix products by weight form, and
    /// attention's products (float32).
    public struct StageFLOPs: Codable, Sendable, Equatable {
        public var float = 0.0, int8 = 0.0, int4 = 0.0, attention = 0.0
        var hasIntegers: Bool { int8 > 0 || int4 > 0 }

        /// 2 · rows · weights for each matrix, by its weight form.
        mutating func add(_ matrices: [MatrixWeight], rows: Double) {
            for w in matrices {
                let f = 2 * rows * Double(w.count)
                switch w {
                case .dense: float += f
                case .int8: int8 += f
                case .int4: int4 += f
                }
            }
        }

        /// Seconds at the given peaks (GFLOP/s, GOP/s); 0 without integer matrices or their peaks.
        func integerFloor(fma: Double, int8Peak: Double, int4Peak: Double) -> Double {
            guard hasIntegers, fma > 0, int8 == 0 || int8Peak > 0, int4 == 0 || int4Peak > 0 else { return 0 }
            return (float + attention) / (fma * 1e9) + (int8 > 0 ? int8 / (int8Peak * 1e9) : 0)
                + (int4 > 0 ? int4 / (int4Peak * 1e9) : 0)
        }
    }

    enum CodingKeys: String, CodingKey {
        case readBandwidthGBs = "read_bandwidth_gbs", fmaPeakGFLOPs = "fma_peak_gflops"
        case readBandwidthProbes = "read_bandwidth_gbs_probes", fmaPeakProbes = "fma_peak_gflops_probes"
        case bf16Kernel = "bf16_kernel", bf16PeakGFLOPs = "bf16_peak_gflops"
        case bf16PrefillFloorSeconds = "bf16_prefill_floor_s", bf16VisionFloorSeconds = "bf16_vision_floor_s"
        case decodeBytesPerToken = "decode_bytes_per_token", decodeFloorMs = "decode_floor_ms"
        case prefillFLOPs = "prefill_flops", prefillFloorSeconds = "prefill_floor_s"
        case visionFLOPs = "vision_flops", visionFloorSeconds = "vision_floor_s"
        case int8DotInstruction = "int8_dot_instruction", int8DotPeakGOPs = "int8_dot_peak_gops"
        case int4DotInstruction = "int4_dot_instruction", int4DotPeakGOPs = "int4_dot_peak_gops"
        case integerPrefillFloorSeconds = "integer_prefill_floor_s", integerVisionFloorSeconds = "integer_vision_floor_s"
        case prefillWork = "prefill_work", visionWork = "vision_work"
    }

    /// Measures the machine (about two seconds in a release build) and works out the floors for
    /// `model` with a prompt of `promptTokens` tokens (image tokens included); with `earlier`
    /// (probes taken before), each limit is the best of its probes.
    public static func measure(model: PaliGemmaModel, promptTokens: Int, bestOf earlier: BenchmarkFloors? = nil) -> BenchmarkFloors {
        let kernel = Kernels.fastKernelInUse
        var floors = BenchmarkFloors(model: model, promptTokens: promptTokens,
                                     readBandwidthGBs: Kernels.measureReadBandwidth(), fmaPeakGFLOPs: Kernels.measureFMAPeak(),
                                     bf16Kernel: kernel, bf16PeakGFLOPs: Kernels.measureBF16Peak(kernel),
                                     int8DotPeakGOPs: Kernels.measureIntegerDotPeak(.pairs),
                                     int4DotPeakGOPs: Kernels.measureIntegerDotPeak(.quads))
        if let earlier { floors = floors.best(with: earlier) }
        return floors
    }

    /// The vision and prefill floors of the instructions a run used: the bf16 ones with fast
    /// products (where the bf16 peak was measured), the integer ones for int8 and 4-bit matrices
    /// with exact products (vision, not quantized, keeps its float32 floor), else the float32 ones.
    public func stageFloors(fastProducts: Bool) -> (vision: Double, prefill: Double) {
        if fastProducts && bf16PeakGFLOPs > 0 { return (bf16VisionFloorSeconds, bf16PrefillFloorSeconds) }
        if integerPrefillFloorSeconds > 0 {
            return (integerVisionFloorSeconds > 0 ? integerVisionFloorSeconds : visionFloorSeconds, integerPrefillFloorSeconds)
        }
        return (visionFloorSeconds, prefillFloorSeconds)
    }

    /// The floors with each limit the better of this and `other`'s probes (same model and prompt).
    public func best(with other: BenchmarkFloors) -> BenchmarkFloors {
        var best = self
        best.readBandwidthProbes = other.readBandwidthProbes + readBandwidthProbes
        best.fmaPeakProbes = other.fmaPeakProbes + fmaPeakProbes
        best.setLimits(bandwidth: best.readBandwidthProbes.max() ?? readBandwidthGBs,
                       peak: best.fmaPeakProbes.max() ?? fmaPeakGFLOPs,
                       bf16Peak: max(bf16PeakGFLOPs, other.bf16PeakGFLOPs),
                       int8Peak: max(int8DotPeakGOPs, other.int8DotPeakGOPs), int4Peak: max(int4DotPeakGOPs, other.int4DotPeakGOPs))
        return best
    }

    /// The limits (GB/s, GFLOP/s, GOP/s) and every floor from them and the work (bytes, FLOPs).
    private mutating func setLimits(bandwidth: Double, peak: Double, bf16Peak: Double, int8Peak: Double, int4Peak: Double) {
        readBandwidthGBs = bandwidth
        fmaPeakGFLOPs = peak
        bf16PeakGFLOPs = bf16Peak
        int8DotPeakGOPs = int8Peak
        int4DotPeakGOPs = int4Peak
        integerPrefillFloorSeconds = prefillWork.integerFloor(fma: peak, int8Peak: int8Peak, int4Peak: int4Peak)
        integerVisionFloorSeconds = visionWork.integerFloor(fma: peak, int8Peak: int8Peak, int4Peak: int4Peak)
        decodeFloorMs = bandwidth > 0 ? Double(decodeBytesPerToken) / (bandwidth * 1e9) * 1000 : 0
        prefillFloorSeconds = peak > 0 ? prefillFLOPs / (peak * 1e9) : 0
        visionFloorSeconds = peak > 0 ? visionFLOPs / (peak * 1e9) : 0
        bf16PrefillFloorSeconds = bf16Peak > 0 ? prefillFLOPs / (bf16Peak * 1e9) : 0
        bf16VisionFloorSeconds = bf16Peak > 0 ? visionFLOPs / (bf16Peak * 1e9) : 0
    }

    /// The floors for `model` and a prompt of `promptTokens` tokens on a machine with the given
    /// read bandwidth and peaks.
    public init(model: PaliGemmaModel, promptTokens: Int, readBandwidthGBs bandwidth: Double, fmaPeakGFLOPs peak: Double,
                bf16Kernel: FastKernel = .none, bf16PeakGFLOPs bf16Peak: Double = 0, int8DotPeakGOPs int8Peak: Double = 0,
                int4DotPeakGOPs int4Peak: Double = 0) {
        let decoder = model.decoder, text = model.config.textConfig, vision = model.config.visionConfig
        let layerMatrices = decoder.layers.flatMap(\.matrices)
        let decodeBytes = layerMatrices.reduce(0) { $0 + $1.weight.byteCount } + decoder.output.weight.byteCount

        func params(_ m: [Linear]) -> Double { m.reduce(0.0) { $0 + Double($1.weight.count) } }
        let t = Double(promptTokens)
        // The work the prefill needs: every layer's matrices over the T prompt rows, except the
        // last layer's queries, output projection and MLP, which only the last row needs (its
        // keys and values go to the cache for every row); the output head for the last row.
        let lastLayer = decoder.layers.last
        let allRows = decoder.layers.dropLast().flatMap(\.matrices) + (lastLayer.map { [$0.attention.k, $0.attention.v] } ?? [])
        let lastRow = lastLayer.map { [$0.attention.q, $0.attention.o] + $0.mlp.matrices } ?? []
        // Prefix-LM: every prompt row attends to the whole prompt (QK and PV: 2 · 2 · T² · H · Dh),
        // the last layer's one row to T keys.
        let perLayerAttention = 4 * t * Double(text.numAttentionHeads * text.headDim)
        let prefillAttention = perLayerAttention * (t * Double(max(text.numHiddenLayers - 1, 0)) + (lastLayer == nil ? 0 : 1))
        let prefill = 2 * t * params(allRows) + 2 * params(lastRow) + prefillAttention + 2 * Double(decoder.output.weight.count)

        let n = Double(vision.numPatches)
        let visionMatrices = model.vision.layers.flatMap { $0.attention.matrices + $0.mlp.matrices }
        let visionAttention = 4 * n * n * Double(vision.hiddenSize * vision.numHiddenLayers)
        let visionFLOPs = 2 * n * (params(visionMatrices) + Double(model.vision.embeddings.patch.weight.count)
            + Double(model.projector.weight.count)) + visionAttention

        var prefillWork = StageFLOPs(attention: prefillAttention)
        prefillWork.add(allRows.map(\.weight), rows: t)
        prefillWork.add(lastRow.map(\.weight) + [decoder.output.weight], rows: 1)
        var visionWork = StageFLOPs(attention: visionAttention)
        visionWork.add(visionMatrices.map(\.weight) + [model.vision.embeddings.patch.weight, model.projector.weight], rows: n)

        readBandwidthProbes = [bandwidth]
        fmaPeakProbes = [peak]
        decodeBytesPerToken = decodeBytes
        prefillFLOPs = prefill
        self.visionFLOPs = visionFLOPs
        self.prefillWork = prefillWork
        self.visionWork = visionWork
        self.bf16Kernel = bf16Kernel.name
        int8DotInstruction = IntegerDot.pairs.instruction
        int4DotInstruction = IntegerDot.quads.instruction
        setLimits(bandwidth: bandwidth, peak: peak, bf16Peak: bf16Peak, int8Peak: int8Peak, int4Peak: int4Peak)
    }
}
