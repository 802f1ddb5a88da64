import Testing
@testable import PaliGemma
