// Image decoding and preprocessing. Placeholder: the implementation arrives with the image issue.
