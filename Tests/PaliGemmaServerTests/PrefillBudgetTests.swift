@testable import PaliGemmaServer
import Testing

/// The rule by which the engine fits prefill pieces into a step's budget.
struct PrefillBudgetTests {
    @Test("a step always runs one prefill piece, then starts another only where the last piece of its kind would still fit")
    func piecesFitTheBudget() {
        var times = PrefillPieceTimes()
        // Nothing measured yet: the first piece always runs, later ones while time is left.
        #expect(times.allows(vision: true, elapsed: 5, budget: 0.1, piecesRun: 0))
        #expect(times.allows(vision: true, elapsed: 0.05, budget: 0.1, piecesRun: 1))
        #expect(!times.allows(vision: true, elapsed: 0.1, budget: 0.1, piecesRun: 1))

        times.record(vision: true, seconds: 0.03)
        times.record(vision: false, seconds: 0.17)
        // A decode step of 0.18 s at share 1: after one 0.17 s decoder layer no second one starts
        // (it would end at 0.34 s), but a 0.03 s vision layer still fits.
        #expect(times.allows(vision: false, elapsed: 0, budget: 0.18, piecesRun: 0))
        #expect(!times.allows(vision: false, elapsed: 0.17, budget: 0.18, piecesRun: 1))
        #expect(times.allows(vision: true, elapsed: 0.12, budget: 0.18, piecesRun: 4))
        #expect(!times.allows(vision: true, elapsed: 0.16, budget: 0.18, piecesRun: 5))
        // With nothing decoding the budget is unlimited.
        #expect(times.allows(vision: false, elapsed: 30, budget: .infinity, piecesRun: 40))

        times.record(vision: false, seconds: 0.05)  // the latest piece of a kind is what counts
        #expect(times.allows(vision: false, elapsed: 0.1, budget: 0.18, piecesRun: 2))
    }
}
