import ArgumentParser
import Foundation
import PaliGemma

/// Options of the commands that turn <loc>/<seg> answers into boxes and masks.
struct TaskOutputArguments: ParsableArguments {
    @Option(help: "Mask decoder checkpoint vae-oid.npz (default: $PALIGEMMA_VAE, beside the model, ~/.cache/paligemma).")
    var vae: String?
    @Option(help: "Write each full-image mask as a PNG into this folder.") var masks: String?
    @Option(help: "Write the image with boxes, labels and masks drawn over it to this PNG file.") var overlay: String?
}

struct Detect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Find objects: boxes in pixels (\"detect a ; b\").",
        discussion: """
        Prints the answer, then one line per object with its box in the image's pixels
        (x_min, y_min, x_max, y_max; big_vision's /1023 convention, see docs/OUTPUTS.md).
        --json adds "detections": [{label, box, box_normalized}].

        Example:
          paligemma detect --model ~/models/paligemma-3b-mix-224 --image street.jpg car person --overlay boxes.png
        """)
    @OptionGroup var common: GenerationArguments
    @OptionGroup var outputs: TaskOutputArguments
    @Argument(help: "What to look for (one or more labels).") var labels: [String]
    func validate() throws {
        try common.validateImages(single: true)
        if labels.isEmpty { throw ValidationError("give at least one label") }
    }
    func run() throws { common.run(.detect(labels: labels), outputs: outputs) }
}

struct Segment: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Segment an object: box and mask (\"segment <label>\").",
        discussion: """
        The 16 <seg> codes are decoded to a 64x64 mask by the VQ-VAE decoder (vae-oid.npz) and
        placed into the box as big_vision does. --json adds "segments": [{label, box, mask64,
        mask_rle, area}]; --masks DIR writes the masks as PNGs, --overlay FILE a picture.

        Example:
          paligemma segment --model ~/models/paligemma-3b-mix-224 --image cat.jpg cat --vae vae-oid.npz --overlay cat.png
        """)
    @OptionGroup var common: GenerationArguments
    @OptionGroup var outputs: TaskOutputArguments
    @Argument(help: "What to segment.") var label: String
    func validate() throws { try common.validateImages(single: true) }
    func run() throws { common.run(.segment(label: label), outputs: outputs) }
}

struct Parse: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn a detect/segment answer produced elsewhere into boxes and masks.",
        discussion: """
        Example:
          paligemma parse --image-size 640x480 --json "<loc0100><loc0200><loc0900><loc0800> cat"
          paligemma parse --image-size 640x480 --vae vae-oid.npz --overlay out.png --image photo.jpg "$ANSWER"
        """)
    @Option(name: .customLong("image-size"), help: "Size of the original image, WIDTHxHEIGHT.") var imageSize: String
    @Option(help: "Draw the overlay on this image (it must have --image-size).") var image: String?
    @Flag(help: "Print JSON instead of a summary.") var json = false
    @OptionGroup var outputs: TaskOutputArguments
    @Argument(help: "The generated text with <loc>/<seg> tokens.") var text: String

    func run() throws {
        do {
            let size = try TaskOutput.parseImageSize(imageSize)
            var picture: RGBImage?
            if let image {
                picture = try ImageDecoder.decode(contentsOf: expandedURL(image))
            }
            let response = try TaskOutputRequest(
                text: text, imageWidth: size.width, imageHeight: size.height, vaePath: outputs.vae,
                maskDirectory: outputs.masks, overlayPath: outputs.overlay, image: picture).run()
            response.printNotes()
            print(json ? try response.result.json() : response.result.summary())
        } catch {
            fail(error)
        }
    }
}
