import Foundation
import Testing
@testable import PaliGemma

/// `Precision.fast` on the parity fixtures: products with bf16 inputs (AMX or AVX512-BF16) against
/// transformers' float32 reference, next to transformers' own native bf16 run of the same
/// checkpoint (the bf16 fixtures carry it). The claim tested: fast stays at least as close to the
/// float32 reference as transformers-bf16 does, in max |logit diff| and in top-1 agreement.
/// Where this machine has no fast kernel, fast must equal exact bit for bit.
struct FastPrecisionTests {
    /// Row-wise argmax agreement of two [rows, vocab] logit arrays.
    static func top1Agreement(_ a: [Float], _ b: [Float], vocab: Int) -> Int {
        (0..<(a.count / vocab)).filter { r in
            let x = a[(r * vocab)..<((r + 1) * vocab)], y = b[(r * vocab)..<((r + 1) * vocab)]
            return x.indices.max { x[$0] < x[$1] } == y.indices.max { y[$0] < y[$1] }
        }.count
    }

    @Test("fast precision: prompt+suffix logits as close to transformers' float32 reference as its own bf16 run",
          arguments: ModelParityTests.names)
    func logits(name: String) throws {
        let c = try ModelParityTests.Case(name)
        let ids = c.prompt + c.suffix
        func run(_ precision: Precision) throws -> [Float] {
            try Kernels.withPrecision(precision) {
                let image = try c.model.imageFeatures(pixels: c.pixels)
                return try c.model.forward(ids: ids, imageFeatures: image, prefixLength: c.prompt.count,
                                           cache: c.model.makeCache(capacity: ids.count), logits: .all).values
            }
        }
        let fast = try run(.fast), exact = try run(.exact)
        let kernel = Kernels.fastKernelInUse
        guard kernel != .none else {
            #expect(fast == exact, "\(name): no fast kernel here, so fast must compute as exact")
            print("[\(name)] no fast kernel at \(Kernels.isa.name): fast equals exact")
            return
        }
        let reference = try c.expected("logits_full")
        let vocab = c.model.decoder.vocabRows, rows = ids.count
        let (d, at) = maxAbsDiff(fast, reference)
        let agree = Self.top1Agreement(fast, reference, vocab: vocab)
        let (dExact, _) = maxAbsDiff(exact, reference)
        #expect(fast != exact, "\(name): fast products should differ from exact in some low bits")
        if c.isBF16 {
            let native = try c.expected("bf16_logits_full")
            let (dn, _) = maxAbsDiff(native, reference)
            let agreeNative = Self.top1Agreement(native, reference, vocab: vocab)
            print("[\(name)] \(kernel.name): max |diff| fast \(d) at \(at), exact \(dExact), transformers bf16 \(dn); top-1 agreement fast \(agree)/\(rows), transformers bf16 \(agreeNative)/\(rows)")
            #expect(d <= dn, "\(name): fast is further from the float32 reference (\(d)) than transformers-bf16 (\(dn))")
            #expect(agree >= agreeNative, "\(name): fast agrees on \(agree) rows, transformers-bf16 on \(agreeNative)")
        } else {
            // float32 weights are rounded to bf16 as well: bounded like the native bf16 comparison.
            print("[\(name)] \(kernel.name): max |diff| fast \(d) at \(at), exact \(dExact) (bound \(ModelParityTests.nativeBF16)); top-1 agreement fast \(agree)/\(rows)")
            #expect(d <= ModelParityTests.nativeBF16, "\(name): fast differs by \(d)")
            #expect(agree * 100 >= rows * 95, "\(name): fast agrees on \(agree) of \(rows) rows")
        }
    }
}
