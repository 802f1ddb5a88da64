/// The tokenizer files' parsers as fuzz targets (see `PaliGemma.FuzzEntryPoints`): a model that
/// loads is also used, since a file that parses can still describe a tokenizer that breaks.
public enum TokenizerFuzzEntryPoints {
    public static let targets: [(name: String, run: @Sendable ([UInt8]) -> Void)] = [
        ("tokenizer-model", { bytes in
            guard let t = try? Tokenizer(sentencePieceModelBytes: bytes) else { return }
            exercise(t)
        }),
        ("tokenizer-json", { bytes in
            guard let t = try? Tokenizer(tokenizerJSONBytes: bytes) else { return }
            exercise(t)
        }),
    ]

    static func exercise(_ t: Tokenizer) {
        let ids = t.encode("caption en\n<loc0001> sss ppp ..... ünïcode 🙂 <eos>", addBOS: true, addEOS: true, matchControlPieces: true)
        _ = t.decode(ids)
        _ = t.decode(ids, skipSpecial: false)
        _ = t.decode([0, 1, 2, 3, Int32(t.vocabularySize - 1)].filter { $0 >= 0 && $0 < Int32(t.vocabularySize) })
    }
}
