import ArgumentParser
import Foundation
import PaliGemma
import PaliGemmaJSON
import PaliGemmaVideo

/// Options every generating command shares.
struct GenerationArguments: ParsableArguments {
    @Option(help: "Checkpoint folder (or a hub id already in the local cache). Default: the bundled shapes model.") var model: String?
    @Option(help: "PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors, as PEFT or `paligemma finetune` writes it) applied to the model.")
    var adapter: String?
    @Option(help: "Image file (JPEG, PNG, PPM/PGM), or - to read it from standard input. Repeat for several images: one prompt over all of them, in order, laid out as transformers' processor lays out a list of images.")
    var image: [String] = []
    @Option(help: "A video file (whatever FFmpeg reads: MP4, WebM, MKV, ...) in place of --image: its frames become the prompt's images, each encoded on its own (see --frames, --stride, --start).")
    var video: String?
    @Option(help: "With --video: how many frames (each adds the model's image tokens: 16 frames are 4,096 tokens at 224 px). A shorter video's frames repeat in order.")
    var frames = 16
    @Option(help: "With --video: take every n-th frame.") var stride = 9
    @Option(help: "With --video: seconds to skip before the first frame.") var start = 0.0
    @Option(name: .customLong("max-tokens"), help: "Most tokens to generate.") var maxTokens = 128
    @Option(help: "Sampling temperature; 0 is greedy (the default).") var temperature: Float = 0
    @Option(name: .customLong("top-k"), help: "Sample among the k most likely tokens (0: all).") var topK = 0
    @Option(name: .customLong("top-p"), help: "Sample among the most likely tokens holding this probability mass.") var topP: Float = 1
    @Option(help: "Random seed for sampling.") var seed: UInt64 = 0
    @Flag(help: "Print one JSON object: text, tokens, prompt_tokens, timings.") var json = false
    @Option(help: "Write pixel_values, input_ids and logits to this .safetensors file.") var dump: String?
    @Flag(name: .customLong("apply-exif-orientation"), help: "Rotate the image as its EXIF orientation says (Pillow and transformers do not).")
    var applyEXIFOrientation = false
    @OptionGroup var configKeys: ConfigKeyArguments
    @Option(help: "Threads (default: all CPUs).") var threads: Int?
    @Option(help: precisionHelp) var precision: Precision?
    @Option(help: "Weights in memory: none (as stored), int8 or int4 (the decoder quantized at load: about a half or a quarter of the memory traffic of bf16; a folder written by `paligemma quantize` loads as it is, with nothing to do at load; leave this at none for it).")
    var quantize: String = "none"

    var options: GenerationOptions {
        GenerationOptions(maxNewTokens: maxTokens,
                          sampling: SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed),
                          stopTokens: [])
    }

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens must be at least 1") }
        guard temperature >= 0 else { throw ValidationError("--temperature must be >= 0") }
        guard topK >= 0 else { throw ValidationError("--top-k must be >= 0") }
        guard topP > 0 && topP <= 1 else { throw ValidationError("--top-p must be in (0, 1]") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        guard Quantization(rawValue: quantize) != nil else { throw ValidationError("--quantize must be none, int8 or int4") }
    }

    func loadPipeline() throws -> PaliGemmaPipeline {
        if let threads { Kernels.threads = threads }
        Kernels.useFrontEndPrecision(precision)
        let pipeline = try PaliGemmaPipeline(directory: try modelURL(model), configStrictness: configKeys.strictness,
                                             quantization: Quantization(rawValue: quantize) ?? .none,
                                             adapter: try adapter.map(modelURL))
        configKeys.warnAboutUnknownKeys(pipeline.model.config)
        return pipeline
    }

    /// Checks --image: given at least once, standard input at most once, and only once when the
    /// answer is turned into boxes and masks (`single`: they are in that image's pixels).
    func validateImages(single: Bool = false) throws {
        if video != nil {
            guard image.isEmpty else { throw ValidationError("give --image or --video, not both") }
            if single { throw ValidationError("give one --image: the boxes and masks are in that image's pixels (not a video's)") }
            do { try sampling.validate() } catch { throw ValidationError("--frames, --stride, --start: \(describe(error))") }
            return
        }
        guard !image.isEmpty else { throw ValidationError("--image is required") }
        guard image.filter({ $0 == "-" }).count <= 1 else { throw ValidationError("only one --image can be - (standard input)") }
        if single && image.count > 1 {
            throw ValidationError("give one --image: the boxes and masks are in that image's pixels")
        }
    }

    var sampling: FrameSampling { FrameSampling(count: frames, stride: stride, start: start) }

    func loadImages() throws -> [RGBImage] {
        if let video {
            let path = expandedPath(video)
            let clip = try VideoReader.frames(path: path, sampling: sampling)
            let i = clip.info
            let shown = clip.indices.prefix(8).map(String.init).joined(separator: ", ") + (clip.indices.count > 8 ? ", ..." : "")
            let repeated = clip.replicated ? "; the video has \(clip.decoded) frames from there, so they repeat" : ""
            let rotation = i.rotation != 0 ? "; its rotation metadata (\(Int(i.rotation)) degrees) is not applied" : ""
            FileHandle.standardError.write(Data(("paligemma: \(video): \(i.codec) \(i.width)x\(i.height) at \(String(format: "%.3g", i.frameRate)) fps; "
                + "\(clip.frames.count) frames (indices \(shown) from \(start) s, every \(stride))\(repeated)\(rotation)\n").utf8))
            return clip.frames
        }
        guard !image.isEmpty else { throw PaliGemmaError.input("--image is required") }
        let options = DecodeOptions(applyEXIFOrientation: applyEXIFOrientation)
        return try image.map { image in
            if image == "-" {
                let data = FileHandle.standardInput.readDataToEndOfFile()
                return try ImageDecoder.decode(data: data, name: "<stdin>", options: options)
            }
            return try ImageDecoder.decode(contentsOf: expandedURL(image), options: options)
        }
    }

    /// Runs one request, streaming the text to stdout unless --json; writes the dump.
    func execute(prompt: String) throws -> (GenerationResult, [RGBImage], PaliGemmaPipeline) {
        let pipeline = try loadPipeline()
        let pictures = try loadImages()
        let result = try pipeline.generate(images: pictures, prompt: prompt, options: options,
                                           keepPixels: dump != nil, keepLogits: dump != nil) { piece in
            if !json {
                FileHandle.standardOutput.write(Data(piece.utf8))
            }
            return .continue
        }
        if !json { print("") }
        if let dump { try DumpFile.write(result, to: URL(fileURLWithPath: dump)) }
        return (result, pictures, pipeline)
    }

    /// Runs one task and prints the answer: the streamed text, or with --json one object. A task
    /// whose answer holds boxes (detect, segment) is then parsed into boxes and masks of the
    /// input image: a summary after the text, or their members in the same JSON object; the
    /// mask decoder, mask PNGs and overlay come from `outputs`. With several images the answer
    /// stays text (boxes would have no one image to be in).
    func run(_ task: PaliGemmaTask, outputs: TaskOutputArguments? = nil) {
        do {
            let (result, images, pipeline) = try execute(prompt: task.prompt)
            guard task.answerFormat != .text, images.count == 1, let image = images.first else {
                if json { print(try JSONOutput.string(GenerationOutput(result, prompt: task.prompt))) }
                return
            }
            let response = try TaskOutputRequest(
                text: result.text, imageWidth: image.width, imageHeight: image.height, vaePath: outputs?.vae,
                modelDirectory: pipeline.directory.path, maskDirectory: outputs?.masks,
                overlayPath: outputs?.overlay, image: image).run()
            response.printNotes()
            if json {
                print(try JSONOutput.string(GenerationOutput(result, prompt: task.prompt, parsed: response.result)))
            } else {
                print(response.result.summary())
            }
        } catch {
            fail(error)
        }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer a prompt about an image (or several).",
        discussion: """
        The prompt is used as given (PaliGemma mix checkpoints understand task prompts such as
        "caption en", "answer en <question>", "detect cat ; dog", "segment car", "ocr").
        Text streams to standard output as it is generated.

        Examples:
          paligemma generate --model ~/models/paligemma-3b-mix-224 --image cat.jpg --prompt "caption en"
          cat photo.png | paligemma generate --model M --image - --prompt "answer en how many dogs?" --json
          paligemma generate --model M --image cat.jpg --prompt "caption en" --dump run.safetensors
          paligemma generate --model M --adapter my-lora --image cat.jpg --prompt "caption en"
          paligemma generate --model M --image left.jpg --image right.jpg --prompt "answer en which one has a dog?"
          paligemma generate --model M --video clip.mp4 --frames 16 --stride 9 --prompt "caption en"
          paligemma generate --model M --batch requests.jsonl --output results.jsonl
        """
    )

    @OptionGroup var common: GenerationArguments
    @Option(help: "The prompt.") var prompt: String?
    @Option(help: "JSON Lines file of requests ({\"image\": ..., \"prompt\": ...} per line).") var batch: String?
    @Option(help: "With --batch: JSON Lines file for the results (appended; finished requests are skipped on restart).")
    var output: String?

    func validate() throws {
        if batch != nil {
            guard output != nil else { throw ValidationError("--batch needs --output") }
            guard common.image.isEmpty, common.video == nil, prompt == nil else {
                throw ValidationError("--batch takes images and prompts from the file")
            }
        } else {
            guard prompt != nil else { throw ValidationError("--prompt is required (or --batch)") }
            try common.validateImages()
        }
    }

    func run() throws {
        if let batch, let output {
            BatchRunner(arguments: common, input: batch, output: output).run()
        } else {
            common.run(.prompt(prompt ?? ""))
        }
    }
}

struct Caption: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Describe an image (\"caption <lang>\", or \"describe <lang>\" with --long).",
        discussion: "Example:\n  paligemma caption --model ~/models/paligemma-3b-mix-224 --image cat.jpg --lang de")
    @OptionGroup var common: GenerationArguments
    @Option(help: "Language code.") var lang = "en"
    @Flag(help: "A longer, detailed description.") var long = false
    func validate() throws { try common.validateImages() }
    func run() throws { common.run(long ? .describe(lang: lang) : .caption(lang: lang)) }
}

struct OCR: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ocr", abstract: "Read the text in an image.",
        discussion: "Example:\n  paligemma ocr --model ~/models/paligemma-3b-mix-224 --image receipt.png")
    @OptionGroup var common: GenerationArguments
    func validate() throws { try common.validateImages() }
    func run() throws { common.run(.ocr) }
}

struct Answer: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Answer a question about an image.",
        discussion: "Example:\n  paligemma answer --model ~/models/paligemma-3b-mix-224 --image street.jpg \"how many cars are there?\"")
    @OptionGroup var common: GenerationArguments
    @Option(help: "Language code.") var lang = "en"
    @Argument(help: "The question.") var question: String
    func validate() throws { try common.validateImages() }
    func run() throws { common.run(.answer(question: question, lang: lang)) }
}
