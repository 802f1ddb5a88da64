// PaliGemma's tokenizer (SentencePiece `tokenizer.model` and Hugging Face `tokenizer.json`).
// Placeholder: the implementation arrives with the tokenizer issue.
