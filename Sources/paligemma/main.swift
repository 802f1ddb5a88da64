import ArgumentParser
import PaliGemma

struct Main: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "paligemma")
}
Main.main()
