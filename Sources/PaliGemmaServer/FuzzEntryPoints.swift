import Foundation
import PaliGemma
import PaliGemmaJSON

/// The server's request decoding as a fuzz target (see `PaliGemma.FuzzEntryPoints`): a body
/// is parsed as JSON and decoded as each endpoint decodes its body (chat and text
/// completions, a typed task with its sampling members), and any `data:` URL in it is
/// decoded as an image reference is.
public enum ServerFuzzEntryPoints {
    public static let targets: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
        ("server-request", request),
    ]

    static func request(_ bytes: [UInt8]) {
        guard let value = try? JSONParser.parse(bytes), case .object = value else { return }
        let decoder = JSONValueDecoder()
        if let chat = try? decoder.decode(ChatCompletionRequest.self, from: value) {
            for message in chat.messages {
                if case let .parts(parts)? = message.content {
                    for part in parts {
                        if let url = part.imageURL?.url { image(url) }
                        if let video = part.videoURL { _ = try? video.checkedSampling(field: "video") }
                    }
                }
            }
        }
        if let completion = try? decoder.decode(CompletionRequest.self, from: value) {
            (completion.image.map { [$0] } ?? completion.images ?? []).forEach(image)
            if let video = completion.video { _ = try? video.checkedSampling(field: "video") }
        }
        _ = try? decoder.decode(SamplingFields.self, from: value)
        _ = try? decoder.decode(PaliGemmaTask.self, from: value)
        if let fields = try? decoder.decode(Routes.TaskFields.self, from: value) {
            (fields.image.map { [$0] } ?? fields.images ?? []).forEach(image)
        }
    }

    static func image(_ reference: String) {
        guard reference.prefix(16).lowercased().hasPrefix("data:"),
              let data = try? ImageInput.dataURL(reference, field: "image", maxBytes: 1 << 20) else { return }
        _ = try? ImageDecoder.probe(data: data, name: "image")
    }
}
