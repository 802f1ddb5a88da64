// The fuzz targets (scripts/fuzz.sh). Built normally, this replays inputs:
//
//   paligemma-fuzz --list
//   paligemma-fuzz TARGET FILE_OR_FOLDER...      (each file is one input; prints how many ran)
//
// Built by scripts/fuzz.sh with -DFUZZING, AddressSanitizer and coverage instrumentation and
// linked with libFuzzer (without its main), it is a libFuzzer binary for the target named by
// PALIGEMMA_FUZZ_TARGET, taking libFuzzer's own arguments.
import Foundation
import PaliGemma
import PaliGemmaImage
import PaliGemmaServer
import PaliGemmaTokenizer
import PaliGemmaVideo

let allTargets = FuzzEntryPoints.targets + TokenizerFuzzEntryPoints.targets + ImageFuzzEntryPoints.targets
    + ServerFuzzEntryPoints.targets + VideoFuzzEntryPoints.targets

func target(named name: String) -> (@Sendable ([UInt8]) -> Void)? {
    allTargets.first { $0.name == name }?.run
}

func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(2)
}

#if FUZZING
typealias FuzzCallback = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: FuzzCallback) -> CInt

nonisolated(unsafe) var selected: (@Sendable ([UInt8]) -> Void)?

@main
struct FuzzMain {
    static func main() {
        let name = ProcessInfo.processInfo.environment["PALIGEMMA_FUZZ_TARGET"] ?? ""
        guard let run = target(named: name) else {
            fail("set PALIGEMMA_FUZZ_TARGET to one of: " + allTargets.map(\.name).joined(separator: ", "))
        }
        selected = run
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in
            selected?(size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size)))
            return 0
        })
    }
}
#else
@main
struct FuzzMain {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.first == "--list" {
            print(allTargets.map(\.name).joined(separator: "\n"))
            return
        }
        guard args.count >= 2, let run = target(named: args[0]) else {
            fail("usage: paligemma-fuzz --list | paligemma-fuzz TARGET FILE_OR_FOLDER...\ntargets: "
                 + allTargets.map(\.name).joined(separator: ", "))
        }
        var count = 0
        for path in args.dropFirst() {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { fail("\(path): no such file or folder") }
            let files = isFolder.boolValue
                ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 }
                : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { fail("\(file): cannot be read") }
                run(Array(data))
                count += 1
            }
        }
        print("\(args[0]): \(count) input(s) ran")
    }
}
#endif
