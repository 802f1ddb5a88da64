import ArgumentParser
import Foundation
import PaliGemma

struct Download: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Download a checkpoint from the Hugging Face hub into the local hub cache.",
        discussion: """
        Files go where huggingface_hub puts them ($HF_HUB_CACHE, default ~/.cache/huggingface/hub), so Python tools and `--model ORG/NAME` find them. Interrupted downloads resume; every file is checked (size, and sha256 for LFS files) before it is placed. Prints the snapshot folder on stdout.

        PaliGemma repositories are gated: accept the license on the model page, then set HF_TOKEN (or log in with `hf auth login`, which writes $HF_HOME/token).

        Environment: HF_TOKEN, HF_ENDPOINT, HF_HOME, HF_HUB_CACHE, HF_HUB_OFFLINE (see docs/HUB.md).

        Examples:
          paligemma download google/paligemma-3b-mix-224
          paligemma download google/paligemma2-3b-pt-224 --revision main --include '*.json'
          paligemma inspect --model google/paligemma-3b-mix-224
        """
    )

    @Argument(help: "Hub repository id, e.g. google/paligemma-3b-mix-224.")
    var repo: String

    @Option(name: .long, help: "Branch, tag or commit hash (default: main).")
    var revision: String?

    @Option(name: .long, help: ArgumentHelp(
        "Only files matching this shell pattern; repeatable (default: config, tokenizer and *.safetensors files).",
        valueName: "pattern"))
    var include: [String] = []

    @Flag(name: .long, help: "Draw the progress bar even when stderr is not a terminal.")
    var progress = false

    @Flag(name: .shortAndLong, help: "No progress output.")
    var quiet = false

    func run() throws {
        do {
            let bar: TerminalProgressBar?
            if quiet { bar = nil } else if progress { bar = TerminalProgressBar() } else { bar = TerminalProgressBar.standardErrorIfTerminal() }
            let downloader = HubDownloader(progress: bar?.handler)
            let snapshot = try downloader.download(repo: repo, revision: revision, include: include.isEmpty ? nil : include)
            print(snapshot.path)
        } catch {
            fail(error)
        }
    }
}
