import ArgumentParser
import Foundation
import PaliGemma

/// What a command that loads a checkpoint does with config.json keys this runtime does not
/// know: by default it loads and prints one warning naming them; `--strict-config` refuses them.
/// (Keys known to change the computation in a way this runtime does not implement are refused
/// either way.)
struct ConfigKeyArguments: ParsableArguments {
    @Flag(name: .customLong("strict-config"),
          help: "Refuse config.json keys this runtime does not know (by default they are ignored with a warning).")
    var strictConfig = false

    /// The flag that once made unknown keys loadable at all, kept so that scripts using it
    /// still run; it now only silences the warning.
    @Flag(name: .customLong("allow-unknown-config-keys"),
          help: ArgumentHelp("Ignore unknown config.json keys without the warning (unknown keys no longer stop a load).",
                             visibility: .hidden))
    var allowUnknownConfigKeys = false

    func validate() throws {
        if strictConfig && allowUnknownConfigKeys {
            throw ValidationError("--strict-config and --allow-unknown-config-keys contradict each other")
        }
    }

    var strictness: ConfigStrictness { strictConfig ? .strict : .lenient }

    /// Prints one line on stderr naming the unknown keys of a loaded config, if there are any
    /// (and the warning is not silenced). Call it once per load.
    func warnAboutUnknownKeys(_ config: PaliGemmaConfig) {
        guard !allowUnknownConfigKeys, !config.unknownKeys.isEmpty else { return }
        let noun = config.unknownKeys.count == 1 ? "key" : "keys"
        let line = "paligemma: warning: config.json: ignoring unknown \(noun) \(config.unknownKeys.joined(separator: ", "))\n"
        FileHandle.standardError.write(Data(line.utf8))
    }
}
