import Foundation
import PaliGemma
#if canImport(Glibc)
import Glibc
#endif

/// What `finetune` writes: a PEFT adapter (LoRA) or a checkpoint folder (attention, full).
enum FinetuneOutputs {
    /// Writes the trained model's results into `output` (replacing the previous save): the
    /// adapter's two files beside the run's other files, or the checkpoint folder `model/`.
    static func writeResults(_ model: TrainableModel, pipeline: PaliGemmaPipeline, output: URL, baseModel: String) throws {
        let fm = FileManager.default
        switch model.method {
        case .lora(let config):
            let staged = output.appendingPathComponent(".adapter.partial")
            try model.adapter(baseModel: baseModel, dropout: config.dropout).write(to: staged, overwrite: true)
            for name in [LoRAAdapter.configFileName, LoRAAdapter.weightsFileName] {
                let target = output.appendingPathComponent(name)
                // rename(2) replaces the old file in one step.
                guard rename(staged.appendingPathComponent(name).path, target.path) == 0 else {
                    throw PaliGemmaError.io(path: target.path, reason: "cannot save the adapter: \(String(cString: strerror(errno)))")
                }
            }
            try? fm.removeItem(at: staged)
        case .attention, .full:
            let checkpoint = try Checkpoint(directory: pipeline.directory, configStrictness: .lenient)
            let values = Dictionary(uniqueKeysWithValues: model.parameters.map { ($0.name, $0.value.values) })
            try TrainedCheckpoint.write(checkpoint, replacing: values, precision: .float32,
                                        to: output.appendingPathComponent("model"), overwrite: true)
        }
    }
}

/// The loss curve as a PNG: training loss per step (and evaluation loss where measured).
enum LossCurve {
    static func write(_ history: [(Int, Double, Double?)], to url: URL) throws {
        let (w, h) = (640, 400)
        let (left, right, top, bottom) = (60, 20, 30, 40)
        var image = RGBImage(width: w, height: h, fill: (255, 255, 255))
        let points = history.filter { $0.1.isFinite }
        let evals = history.compactMap { s -> (Int, Double)? in s.2.flatMap { $0.isFinite ? (s.0, $0) : nil } }
        let values = points.map(\.1) + evals.map(\.1)
        guard let lo = values.min(), let hi = values.max(), let lastStep = history.last?.0 else {
            try PNGWriter.write(image, to: url)
            return
        }
        let span = max(hi - lo, 1e-9)
        func x(_ step: Int) -> Int { left + (w - left - right) * (step - 1) / max(lastStep - 1, 1) }
        func y(_ v: Double) -> Int { top + Int(Double(h - top - bottom) * (hi - v) / span) }
        let axis = RGBColor(90, 90, 90)
        image.fillRectangle(x0: left, y0: top, x1: left, y1: h - bottom, color: axis)
        image.fillRectangle(x0: left, y0: h - bottom, x1: w - right, y1: h - bottom, color: axis)
        image.drawText(String(format: "%.3f", hi), x: 2, y: top - 6, color: axis, scale: 1)
        image.drawText(String(format: "%.3f", lo), x: 2, y: h - bottom - 6, color: axis, scale: 1)
        image.drawText("step 1", x: left, y: h - bottom + 6, color: axis, scale: 1)
        image.drawText("step \(lastStep)", x: w - right - 60, y: h - bottom + 6, color: axis, scale: 1)
        image.drawText("training loss", x: left + 10, y: 6, color: RGBColor(30, 90, 200), scale: 2)
        if !evals.isEmpty { image.drawText("eval loss", x: left + 200, y: 6, color: RGBColor(220, 60, 40), scale: 2) }
        func line(_ series: [(Int, Double)], _ color: RGBColor) {
            var previous: (Int, Int)?
            for (step, v) in series {
                let p = (x(step), y(v))
                if let q = previous {
                    let n = max(abs(p.0 - q.0), abs(p.1 - q.1), 1)
                    for i in 0...n {
                        let px = q.0 + (p.0 - q.0) * i / n, py = q.1 + (p.1 - q.1) * i / n
                        image.fillRectangle(x0: px, y0: py, x1: px + 1, y1: py + 1, color: color)
                    }
                }
                previous = p
                image.fillRectangle(x0: p.0 - 1, y0: p.1 - 1, x1: p.0 + 1, y1: p.1 + 1, color: color)
            }
        }
        line(points.map { ($0.0, $0.1) }, RGBColor(30, 90, 200))
        line(evals, RGBColor(220, 60, 40))
        do { try PNGWriter.write(image, to: url) } catch {
            throw PaliGemmaError.io(path: url.path, reason: "cannot write the loss curve: \(error)")
        }
    }
}
