// Every committed fuzz input (Fuzz/corpus/<target>/: the seeds of scripts/make_fuzz_seeds.py
// and what campaigns kept, crashes found and fixed among them) replayed through its target, so a
// parser change that brings back a crash fails here, in seconds, without libFuzzer.
// Lives with the server tests because this target sees every parsing module.

import Foundation
import Testing
import PaliGemma
import PaliGemmaImage
import PaliGemmaServer
import PaliGemmaTokenizer
import PaliGemmaVideo

@Suite struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz/corpus")
    static let targets = FuzzEntryPoints.targets + TokenizerFuzzEntryPoints.targets + ImageFuzzEntryPoints.targets
        + ServerFuzzEntryPoints.targets + VideoFuzzEntryPoints.targets

    @Test func everyTargetHasACorpusAndEveryCorpusATarget() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).filter { !$0.hasPrefix(".") }
        #expect(Set(folders) == Set(Self.targets.map(\.name)))
        #expect(Set(Self.targets.map(\.name)).count == Self.targets.count, "two targets share a name")
    }

    @Test(arguments: targets.map(\.name))
    func corpusReplays(_ name: String) throws {
        let run = try #require(Self.targets.first { $0.name == name }?.run)
        let folder = Self.corpus.appendingPathComponent(name)
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).sorted()
        #expect(!files.isEmpty, "no inputs for \(name)")
        for file in files {
            run(Array(try Data(contentsOf: folder.appendingPathComponent(file))))
        }
    }
}
