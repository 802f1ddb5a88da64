// One import for library users: the tokenizer and image modules come with the model.
@_exported import PaliGemmaImage
@_exported import PaliGemmaTokenizer
