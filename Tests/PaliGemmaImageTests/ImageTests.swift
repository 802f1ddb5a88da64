import Testing
@testable import PaliGemmaImage
