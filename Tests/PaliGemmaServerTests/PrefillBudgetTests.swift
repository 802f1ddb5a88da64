@testable import PaliGemmaServer
import PaliGemma
import Testing

/// The rule by which the engine fits prefill pieces into a step's budget.
struct PrefillBudgetTests {
    typealias Piece = StagedPrefill.Piece

    @Test("a step always runs one prefill piece, then starts another only where the last piece of its kind would still fit")
    func piecesFitTheBudget() {
        var times = PrefillPieceTimes()
        // Nothing measured yet: the first piece always runs, later ones while time is left.
        #expect(times.plan(.vision, elapsed: 5, budget: 0.1, piecesRun: 0) == .run(rows: nil))
        #expect(times.plan(.vision, elapsed: 0.05, budget: 0.1, piecesRun: 1) == .run(rows: nil))
        #expect(times.plan(.vision, elapsed: 0.1, budget: 0.1, piecesRun: 1) == .wait)
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0, budget: 0.1, piecesRun: 0) == .run(rows: nil))
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0.01, budget: 0.1, piecesRun: 1) == .wait)

        times.record(.vision, after: .vision, seconds: 0.03)
        times.record(.decoderAttention, after: .decoderFeedForward(rows: 266), seconds: 0.02)
        times.record(.output, after: .finished, seconds: 0.2)
        // A decode step of 0.18 s at share 1: a 0.03 s vision layer fits until 0.15 s, an
        // attention half until 0.16 s, the 0.2 s output only as the step's first piece.
        #expect(times.plan(.vision, elapsed: 0.12, budget: 0.18, piecesRun: 4) == .run(rows: nil))
        #expect(times.plan(.vision, elapsed: 0.16, budget: 0.18, piecesRun: 5) == .wait)
        #expect(times.plan(.decoderAttention, elapsed: 0.16, budget: 0.18, piecesRun: 5) == .run(rows: nil))
        #expect(times.plan(.output, elapsed: 0.01, budget: 0.18, piecesRun: 1) == .wait)
        #expect(times.plan(.output, elapsed: 0, budget: 0.18, piecesRun: 0) == .run(rows: nil))
        // With nothing decoding the budget is unlimited.
        #expect(times.plan(.output, elapsed: 30, budget: .infinity, piecesRun: 40) == .run(rows: nil))
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 30, budget: .infinity, piecesRun: 40) == .run(rows: nil))

        times.record(.vision, after: .vision, seconds: 0.01)  // the latest piece of a kind is what counts
        #expect(times.plan(.vision, elapsed: 0.16, budget: 0.18, piecesRun: 5) == .run(rows: nil))
    }

    @Test("feed-forward halves are cut to the rows that fit what is left of the budget, never below the minimum")
    func feedForwardRowsFit() {
        var times = PrefillPieceTimes()
        let least = PrefillPieceTimes.minimumFeedForwardRows
        // 256 rows in 0.125 s: 1/2048 s a row.
        times.record(.decoderFeedForward(rows: 266), after: .decoderFeedForward(rows: 10), seconds: 0.125)
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0, budget: 0.0625, piecesRun: 0) == .run(rows: 128))
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0.03125, budget: 0.0625, piecesRun: 2) == .run(rows: least))
        // Too little time left for the smallest piece: wait, unless it is the step's first piece.
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0.04, budget: 0.0625, piecesRun: 2) == .wait)
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0, budget: 0.01, piecesRun: 0) == .run(rows: least))
        // A piece that ran to the end of the half counts all its rows: 128 rows in 0.125 s.
        times.record(.decoderFeedForward(rows: 128), after: .decoderAttention, seconds: 0.125)
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0, budget: 0.125, piecesRun: 0) == .run(rows: 128))
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0.0625, budget: 0.125, piecesRun: 1) == .run(rows: 64))
        // Rows that fit are rounded down to the kernel's blocks of 32: 100 rows' time runs 96.
        let multiple = PrefillPieceTimes.rowMultiple
        #expect(multiple == 32)
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0, budget: 100.0 / 1024, piecesRun: 0) == .run(rows: 96))
        // A huge finite budget (a huge --prefill-share) asks for many rows without overflowing.
        #expect(times.plan(.decoderFeedForward(rows: 266), elapsed: 0, budget: 1e300, piecesRun: 3) == .run(rows: 1_000_000_000 / multiple * multiple))
    }
}
