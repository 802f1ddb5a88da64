import Testing
@testable import PaliGemma

struct MetricsTests {
    @Test("VQA normalisation: case, punctuation, articles, number words, contractions")
    func normalize() {
        #expect(AnswerMetrics.normalize("The Red circle.") == "red circle")
        #expect(AnswerMetrics.normalize("two") == "2" && AnswerMetrics.normalize("  Ten  ") == "10")
        #expect(AnswerMetrics.normalize("3.5 cm") == "3.5 cm")
        #expect(AnswerMetrics.normalize("dont know!") == "don't know")
        #expect(AnswerMetrics.vqaMatch("A dog", "dog") && !AnswerMetrics.exactMatch("A dog", "dog"))
        #expect(!AnswerMetrics.vqaMatch("two dogs", "3 dogs"))
    }

    @Test("boxes: IoU, greedy same-label matching at 0.5, precision, recall, F1, mean IoU")
    func boxes() {
        let a = NormalizedBox(xMin: 0, yMin: 0, xMax: 0.5, yMax: 0.5), b = NormalizedBox(xMin: 0.25, yMin: 0, xMax: 0.75, yMax: 0.5)
        #expect(abs(AnswerMetrics.iou(a, b) - 1.0 / 3) < 1e-12 && AnswerMetrics.iou(a, a) == 1)
        // Reference: two circles and a square; answer: one circle exact, one circle shifted a little, a wrong label.
        let ref = "<loc0000><loc0000><loc0511><loc0511> circle ; <loc0512><loc0512><loc1023><loc1023> circle ; <loc0000><loc0512><loc0511><loc1023> square"
        let ans = "<loc0000><loc0000><loc0511><loc0511> circle ; <loc0540><loc0540><loc1023><loc1023> circle ; <loc0000><loc0512><loc0511><loc1023> triangle"
        let c = AnswerMetrics.boxes(ans, ref)
        #expect(c.predicted == 3 && c.reference == 3 && c.matched == 2)
        #expect(abs(c.precision - 2.0 / 3) < 1e-12 && abs(c.recall - 2.0 / 3) < 1e-12 && abs(c.f1 - 2.0 / 3) < 1e-12)
        #expect(c.meanIoU > 0.9 && c.meanIoU < 1)
        let empty = AnswerMetrics.boxes("", "")
        #expect(empty.precision == 1 && empty.recall == 1)
        #expect((c + c).matched == 4 && AnswerMetrics.hasBoxes(ref) && !AnswerMetrics.hasBoxes("a red circle"))
    }
}
