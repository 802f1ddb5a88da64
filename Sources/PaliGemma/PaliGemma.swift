@_exported import PaliGemmaTokenizer
