import ArgumentParser
import Foundation
import PaliGemma

struct Shapes: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "shapes",
        abstract: "Write a synthetic fine-tuning data set: scenes of circles, squares and triangles with their questions.",
        discussion: """
        Each image is a square canvas with a plain background and 1 to 4 filled circles, \
        squares and triangles in red, green, blue or yellow (docs/FINETUNING.md describes the \
        world). data.jsonl holds one line per question, {"image", "prefix", "suffix"}, the \
        format `paligemma finetune --train` reads: caption 1 line per image, count 4, color 0-3 \
        (one per shape present exactly once), detect 4 (each shape alone, then one two-label \
        prompt), so 9 to 12 lines per image with every task; --questions N keeps N of them, \
        drawn at random, for training sets that see more images per question, and \
        --always caption keeps each image's caption among them; --objects 3-4 draws only \
        scenes with 3 or 4 objects (the hardest captions). The same seed, size, tasks, \
        --questions, --always and --objects give the same bytes; image i does not depend on --count. The output must not exist \
        (or be an empty folder).

        Example:
          paligemma shapes --output shapes-train --count 2000 --seed 1
          paligemma finetune --model my-model --train shapes-train/data.jsonl --output run
        """
    )

    @Option(help: "Folder to write (must not exist, or be empty).") var output: String
    @Option(help: "Number of images.") var count: Int
    @Option(help: "Seed of the scenes and questions.") var seed: UInt64
    @Option(help: "Canvas side in pixels (64...2048); object sizes scale with it.") var size = 224
    @Option(help: "Comma-separated question sets: caption, count, color, detect.") var tasks = "caption,count,color,detect"
    @Option(help: "Questions per image, drawn at random from its list (default: all); the images do not change.") var questions: Int?
    @Option(help: "Comma-separated question sets always kept with --questions (e.g. caption); the rest drawn from the others.")
    var always = ""
    @Option(help: "Objects per scene: a range such as 3-4, or one count (within 1-4).") var objects = "1-4"
    @Option(help: "Edges: random (per scene, from the seed), on (4x4 supersampled coverage) or off.") var antialias = "random"

    func run() throws {
        do {
            guard let edges = ShapesAntialias(rawValue: antialias) else {
                throw PaliGemmaError.input("shapes: --antialias must be random, on or off, got '\(antialias)'")
            }
            let generator = try ShapesGenerator(size: size, seed: seed, tasks: try ShapesGenerator.tasks(tasks), antialias: edges,
                                                questionsPerImage: questions,
                                                alwaysKept: always.isEmpty ? [] : try ShapesGenerator.tasks(always),
                                                objectCounts: try ShapesGenerator.objectCounts(objects))
            let folder = expandedURL(output)
            let progress = PercentProgress("generating")
            let lines = try ShapesDataset.write(generator, count: count, to: folder) { progress.update($0, count) }
            progress.finish()
            print("wrote \(count) images and \(lines) lines to \(folder.appendingPathComponent("data.jsonl").path)")
        } catch {
            fail(error)
        }
    }
}
