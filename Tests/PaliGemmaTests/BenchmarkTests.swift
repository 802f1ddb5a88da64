import Foundation
import Testing
@testable import PaliGemma

struct BenchmarkTests {
    @Test("bench --vision-batches: each batch size timed every round, in one JSON list")
    func visionBatches() throws {
        let timings = try Benchmark.visionBatches(directory: Fixtures.model("pg1-f32"), images: 5, batches: [1, 2, 5], rounds: 2)
        #expect(timings.map(\.batch) == [1, 2, 5] && timings.allSatisfy { $0.images == 5 && $0.seconds.count == 2 })
        #expect(timings.allSatisfy { $0.best == $0.seconds.min() && $0.best > 0 })
        let cli = try EndToEndTests.run(["bench", "--model", Fixtures.model("pg1-f32").path, "--images", "3",
                                         "--vision-batches", "1", "--vision-batches", "3", "--json"])
        #expect(cli.status == 0, "\(cli.stderr)")
        let list = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [[String: Any]]
        #expect(list?.compactMap { $0["batch"] as? Int } == [1, 3])
    }

    @Test("bench --prefill-pieces: whole halves first, each cut timed every round, logits compared bit for bit")
    func prefillPieces() throws {
        // 16 image tokens + <bos> + 40 + "\n": 58 rows, cut into 16 + 16 + 26 or 20 + 20 + 18.
        let timings = try Benchmark.prefillPieces(directory: Fixtures.model("pg1-f32"), promptTokens: 40, rows: [16, 20], rounds: 2)
        let layers = 2
        #expect(timings.map(\.rows) == [0, 16, 20])
        // Cut: each layer's attention, then its feed-forward half in three pieces, except the last
        // layer's, which runs on the prompt's last row alone (one piece); then the output.
        #expect(timings.map(\.pieces) == [2 * layers + 1, 4 * layers - 1, 4 * layers - 1])
        #expect(timings.allSatisfy { $0.identical && $0.seconds.count == 2 && $0.best == $0.seconds.min() && $0.forwardBest > 0 })
        let cli = try EndToEndTests.run(["bench", "--model", Fixtures.model("pg1-f32").path, "--prompt-tokens", "40",
                                         "--prefill-pieces", "16", "--json"])
        #expect(cli.status == 0, "\(cli.stderr)")
        let list = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [[String: Any]]
        #expect(list?.compactMap { $0["rows"] as? Int } == [0, 16] && list?.allSatisfy { $0["identical"] as? Bool == true } == true)
        let bad = try EndToEndTests.run(["bench", "--model", Fixtures.model("pg1-f32").path, "--prefill-pieces", "-1"])
        #expect(bad.status != 0 && bad.stderr.contains("--prefill-pieces"))
    }

    @Test("bench --decode-batches: each number of sequences stepped together, in one JSON list")
    func decodeBatches() throws {
        let timings = try Benchmark.decodeBatches(directory: Fixtures.model("pg1-f32"), promptTokens: 3, sequences: [1, 3], steps: 4)
        #expect(timings.map(\.sequences) == [1, 3] && timings.allSatisfy { $0.steps == 4 && $0.msMin > 0 && $0.msMin <= $0.msPerStep })
        #expect(timings.allSatisfy { abs($0.tokensPerSecond - Double($0.sequences) * 1000 / $0.msPerStep) < 1e-9 * $0.tokensPerSecond })
        let cli = try EndToEndTests.run(["bench", "--model", Fixtures.model("pg1-f32").path, "--new-tokens", "2",
                                         "--decode-batches", "2", "--decode-batches", "1", "--json"])
        #expect(cli.status == 0, "\(cli.stderr)")
        let list = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [[String: Any]]
        #expect(list?.compactMap { $0["sequences"] as? Int } == [2, 1] && list?.allSatisfy { $0["steps"] as? Int == 2 } == true)
        let bad = try EndToEndTests.run(["bench", "--model", Fixtures.model("pg1-f32").path, "--decode-batches", "0"])
        #expect(bad.status != 0 && bad.stderr.contains("--decode-batches"))
    }

    @Test("bench floors: bytes decode streams per token, FLOPs of prefill and vision, and the floors from them")
    func floors() throws {
        // pg1-f32: decoder D 64, 4 query heads and 1 key/value head of 16, MLP 96, 2 layers, 320
        // vocabulary rows (tied); vision width 32, MLP 48, 2 layers, 16 patches of 3x14x14.
        let perLayer = 64 * 64 + 2 * 16 * 64 + 64 * 64 + 3 * 64 * 96
        let decodeParams = 2 * perLayer + 320 * 64
        let stored = try PaliGemmaModel(directory: Fixtures.model("pg1-f32"))
        let f = BenchmarkFloors(model: stored, promptTokens: 26, readBandwidthGBs: 10, fmaPeakGFLOPs: 100)
        #expect(f.decodeBytesPerToken == decodeParams * 4)
        #expect(abs(f.decodeFloorMs - Double(decodeParams * 4) / 10e9 * 1000) < 1e-12)
        let int8 = try PaliGemmaModel(directory: Fixtures.model("pg1-f32"), quantization: .int8)
        let scales = 2 * (64 + 16 + 16 + 64 + 96 + 96 + 64) + 320
        #expect(BenchmarkFloors(model: int8, promptTokens: 26, readBandwidthGBs: 10, fmaPeakGFLOPs: 100).decodeBytesPerToken
                == decodeParams + scales * 4)

        // The first layer over all 26 rows; the last one's keys and values over all rows, its
        // queries, output projection and MLP (and attention) for the last row; the head for it.
        let lastRowParams = 64 * 64 + 64 * 64 + 3 * 64 * 96, kvParams = 2 * 16 * 64
        let prefill = 2.0 * 26 * Double(perLayer + kvParams) + 2.0 * Double(lastRowParams) + 4.0 * 26 * 4 * 16 * (26 + 1)
            + 2.0 * 320 * 64
        #expect(f.prefillFLOPs == prefill)
        let visionParams = 2 * (4 * 32 * 32 + 2 * 32 * 48) + 32 * 3 * 14 * 14 + 64 * 32
        #expect(f.visionFLOPs == 2.0 * 16 * Double(visionParams) + 4.0 * 16 * 16 * 32 * 2)
        #expect(abs(f.prefillFloorSeconds - prefill / 100e9) < 1e-15)
        #expect(f.bf16Kernel == "none" && f.bf16PeakGFLOPs == 0 && f.bf16PrefillFloorSeconds == 0)
        let bf16 = BenchmarkFloors(model: stored, promptTokens: 26, readBandwidthGBs: 10, fmaPeakGFLOPs: 100,
                                   bf16Kernel: .amx, bf16PeakGFLOPs: 1000)
        #expect(bf16.bf16Kernel == "amx-bf16")
        #expect(abs(bf16.bf16PrefillFloorSeconds - prefill / 1000e9) < 1e-15)
        #expect(abs(bf16.bf16VisionFloorSeconds - bf16.visionFLOPs / 1000e9) < 1e-15)

        // Probes taken at two times: each limit is the best of its probes, the floors follow it.
        let later = BenchmarkFloors(model: stored, promptTokens: 26, readBandwidthGBs: 20, fmaPeakGFLOPs: 50)
        let best = later.best(with: f)
        #expect(best.readBandwidthProbes == [10, 20] && best.fmaPeakProbes == [100, 50])
        #expect(best.readBandwidthGBs == 20 && best.fmaPeakGFLOPs == 100)
        #expect(abs(best.decodeFloorMs - f.decodeFloorMs / 2) < 1e-12)
        #expect(best.prefillFloorSeconds == f.prefillFloorSeconds && best.visionFloorSeconds == f.visionFloorSeconds)
        #expect(best.decodeBytesPerToken == f.decodeBytesPerToken && best.prefillFLOPs == f.prefillFLOPs)
        let mixed = BenchmarkFloors(model: stored, promptTokens: 26, readBandwidthGBs: 5, fmaPeakGFLOPs: 200,
                                    bf16Kernel: .amx, bf16PeakGFLOPs: 500).best(with: bf16)
        #expect(mixed.readBandwidthGBs == 10 && mixed.fmaPeakGFLOPs == 200 && mixed.bf16PeakGFLOPs == 1000)
        #expect(abs(mixed.bf16PrefillFloorSeconds - prefill / 1000e9) < 1e-15)
        #expect(abs(mixed.prefillFloorSeconds - prefill / 200e9) < 1e-15)
        #expect(f.integerPrefillFloorSeconds == 0 && f.integerVisionFloorSeconds == 0, "no integer matrices")
        #expect(f.prefillWork.float + f.prefillWork.attention == prefill && f.visionWork.float + f.visionWork.attention == f.visionFLOPs)
    }

    @Test("bench floors with int8 and 4-bit matrices: each at its integer instruction's peak, attention and float matrices at the FMA peak")
    func integerFloors() throws {
        let perLayer = 64 * 64 + 2 * 16 * 64 + 64 * 64 + 3 * 64 * 96
        let lastRowParams = 64 * 64 + 64 * 64 + 3 * 64 * 96, kvParams = 2 * 16 * 64
        // The decoder's (its last layer's queries, output projection and MLP for one row) and the output head's.
        let matrices = 2.0 * 26 * Double(perLayer + kvParams) + 2.0 * Double(lastRowParams) + 2.0 * 320 * 64
        let attention = 4.0 * 26 * 4 * 16 * (26 + 1)
        for (quantization, form) in [(Quantization.int8, "int8"), (.int4, "int4")] {
            let model = try PaliGemmaModel(directory: Fixtures.model("pg1-f32"), quantization: quantization)
            let f = BenchmarkFloors(model: model, promptTokens: 26, readBandwidthGBs: 10, fmaPeakGFLOPs: 100,
                                    int8DotPeakGOPs: 400, int4DotPeakGOPs: 800)
            let work = f.prefillWork
            #expect((form == "int8" ? work.int8 : work.int4) == matrices && work.float == 0 && work.attention == attention, "\(form): \(work)")
            #expect(work.float + work.int8 + work.int4 + work.attention == f.prefillFLOPs)
            let want = attention / 100e9 + matrices / (form == "int8" ? 400e9 : 800e9)
            #expect(abs(f.integerPrefillFloorSeconds - want) < 1e-15, "\(form): \(f.integerPrefillFloorSeconds) vs \(want)")
            // The vision tower stays in float: no integer floor of its own.
            #expect(!f.visionWork.hasIntegers && f.integerVisionFloorSeconds == 0)
            // Without the instruction's peak there is no integer floor.
            let unmeasured = BenchmarkFloors(model: model, promptTokens: 26, readBandwidthGBs: 10, fmaPeakGFLOPs: 100,
                                             int8DotPeakGOPs: form == "int8" ? 0 : 400, int4DotPeakGOPs: form == "int4" ? 0 : 800)
            #expect(unmeasured.integerPrefillFloorSeconds == 0)
            // Best of two probes: the larger peak, and the floor from it.
            let best = unmeasured.best(with: f)
            #expect(best.int8DotPeakGOPs == 400 && best.int4DotPeakGOPs == 800 && best.integerPrefillFloorSeconds == f.integerPrefillFloorSeconds)
        }
    }

    @Test("machine probes return a read bandwidth and (with SIMD) an FMA rate")
    func probes() {
        let bandwidth = Kernels.measureReadBandwidth(bytes: 32 << 20, reps: 1)
        let peak = Kernels.measureFMAPeak(rounds: 20_000)
        print("probes (debug build, small): read \(bandwidth) GB/s, FMA \(peak) GFLOP/s")
        #expect(bandwidth > 0)
        if Kernels.isa != .scalar { #expect(peak > 0) }
        for kernel in [FastKernel.avx512BF16, .amx] {
            let bf16 = Kernels.measureBF16Peak(kernel, rounds: 20_000)
            print("probe \(kernel.name): \(bf16) GFLOP/s")
            #expect(kernel.isSupported ? bf16 > 0 : bf16 == 0)
        }
        for kind in IntegerDot.allCases {
            let gops = Kernels.measureIntegerDotPeak(kind, rounds: 20_000)
            print("probe \(kind.instruction): \(gops) GOP/s")
            #expect(Kernels.isa == .scalar ? gops == 0 && kind.instruction == "none" : gops > 0)
        }
        // The instruction follows the thread's features, as the kernels do.
        #expect(Kernels.withFeatures([]) { [IntegerDot.pairs.instruction, IntegerDot.quads.instruction] }
                == (Kernels.isa == .scalar ? ["none", "none"] : ["vpmaddwd", "vpmaddubsw"]))
        if Kernels.isa != .scalar, !Set(Kernels.features).isDisjoint(with: ["avx-vnni", "avx512-vnni"]) {
            #expect(IntegerDot.pairs.instruction == "vpdpwssd" && IntegerDot.quads.instruction == "vpdpbusd")
        }
    }
}
