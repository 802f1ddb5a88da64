/// The task prompts PaliGemma mix checkpoints were trained on.
public enum TaskPrompt {
    public static func caption(lang: String = "en", long: Bool = false) -> String {
        long ? "describe \(lang)" : "caption \(lang)"
    }
    public static let ocr = "ocr"
    public static func answer(_ question: String, lang: String = "en") -> String { "answer \(lang) \(question)" }
    public static func question(_ answer: String, lang: String = "en") -> String { "question \(lang) \(answer)" }
    /// `detect cat ; dog`
    public static func detect(_ labels: [String]) -> String { "detect " + labels.joined(separator: " ; ") }
    public static func segment(_ label: String) -> String { "segment \(label)" }
}
