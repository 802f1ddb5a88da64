import Testing
@testable import PaliGemmaTokenizer
