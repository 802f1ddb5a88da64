#!/usr/bin/env python3
"""Generates the tokenizer parity fixtures in Tests/PaliGemmaTokenizerTests/Fixtures.

Run by hand (not by CI) from the repository root:

    python scripts/make_tokenizer_fixtures.py

Pinned versions (checked at start-up; the script refuses to run with others):
    python         3.11
    sentencepiece  0.2.3
    transformers   5.24.0
    tokenizers     0.23.3
    protobuf       7.36.2

Everything is seeded (SEED below), so a rerun with these versions writes the same files.

For each model it writes into Fixtures/<name>/:
    tokenizer.model   trained by sentencepiece (BPE, byte fallback) with PaliGemma's
                      <loc0000>..<loc1023>, <seg000>..<seg127>, <image> appended as
                      USER_DEFINED pieces through sentencepiece_model_pb2
    tokenizer.json    what transformers' GemmaTokenizer converts from it and saves (Gemma-settings models
                      only: GemmaTokenizer imposes Gemma's normalizer, so for the dummy-prefix model it
                      would not describe the same tokenizer, and transformers' generic conversion uses
                      regex normalizers that the Swift reader reports as unsupported)
    expected.json     per corpus string: the ids from sentencepiece, the ids from
                      transformers where they differ, sentencepiece's decode of its ids,
                      plus decode cases for arbitrary id sequences
and Fixtures/corpus.json (the shared test corpus).
"""
import io
import json
import os
import random
import sys
import tempfile

PINNED = {"sentencepiece": "0.2.3", "transformers": "5.24.0", "tokenizers": "0.23.3", "protobuf": "7.36.2"}
SEED = 20240517

import google.protobuf
import sentencepiece as spm
import tokenizers
import transformers
from sentencepiece import sentencepiece_model_pb2 as model_pb2

_versions = {
    "sentencepiece": spm.__version__,
    "transformers": transformers.__version__,
    "tokenizers": tokenizers.__version__,
    "protobuf": google.protobuf.__version__,
}
for _name, _want in PINNED.items():
    if _versions[_name] != _want:
        sys.exit(f"{_name} {_versions[_name]} found, {_want} pinned; install the pinned versions")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "PaliGemmaTokenizerTests", "Fixtures")

# ---------------------------------------------------------------------------------------------
# Training text: real English (docstrings of the installed transformers package) plus seeded
# pseudo-text in other scripts built from per-language syllable inventories (Zipf-distributed
# words), so BPE learns realistic merges for every script the corpus exercises.

SYLLABLES = {
    "latin_accented": "ça é è ê à â ô û ü ö ä ß ñ ó í ú ø å œ ł ś ż ź ć ř š ž č ě ů ý".split(),
    "cyrillic": "при ве т мир до бро е ка на по ст ра ни ло ко ва ть ся щ ж ы э ю я ё ш".split(),
    "greek": "κα λη μέ ρα σου το της και είναι ον ος ας ει οι ου α ε ι ο υ ω".split(),
    "arabic": "ال سل ام عل يك م مر حب ا كت ب في من و ه ن ي ت".split(),
    "hebrew": "של ום שלו ם תו דה בו קר טו ב אני את הוא לא כן".split(),
    "devanagari": "न म स्ते क्या हा ल है आ प कै से हिं दी भा षा".split(),
    "cjk": list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声全工己话儿者向情部正名定女问力机给等几很业最间新什打便位因重被走电四第门相次东政海口使教西再平真听世气信北少关并内加化由却代军产入先山五太水万市眼体别处总才场师书比住员九笑性通目华报立马命张活难神数件安表原车白应路期叫死常提感金何更反合放做系计或司利受光王果亲界及今京务制解各任至清物台象记边共风战干接它许八特觉望直服毛林题建南度统色字请交爱让认算论百吃义科怎元社术结六功指思非流每青管夫连远资队跟带花快条院变联言权往展该领传近留红治决周保达办运武半候七必城父强步完革深区即求品士转量空甚众技轻程告江语英基派满式李息写呢识极令黄德收脸钱党倒未持取设始版双历越史商千片容研像找友孩站广改议形委早房音火际则首单据导影失拿网香似斯专石若兵弟谁校读志飞观争究包组造落视济喜离虽坐集编宝谈府拉黑且随格尽剑讲布杀微怕母调局根曾准团段终乐切级克精哪官示冷域读").copy(),
    "hangul": "안 녕 하 세 요 감 사 합 니 다 한 국 어 사 람 친 구".split(),
    "thai": "สวัส ดี ครับ ค่ะ ขอบ คุณ ภาษา ไทย".split(),
}
EMOJI = list("😀😂🥲😍🤖🚀🌍🔥✨👍🏽👩‍💻🇫🇷🧪🐈🦀")


def english_sentences():
    import inspect
    lines = []
    for name in sorted(dir(transformers.tokenization_utils_base)):
        obj = getattr(transformers.tokenization_utils_base, name)
        doc = inspect.getdoc(obj) if callable(obj) else None
        if doc:
            lines.extend(l.strip() for l in doc.splitlines() if len(l.strip()) > 20)
    return lines


def pseudo_words(rng, script, count):
    syl = SYLLABLES[script]
    joiner = "" if script != "cjk" else ""
    return [joiner.join(rng.choice(syl) for _ in range(rng.randint(1, 4))) for _ in range(count)]


def training_text(rng, lines=30000):
    english = english_sentences()
    lexicons = {s: pseudo_words(rng, s, 400) for s in SYLLABLES}
    out = []
    for i in range(lines):
        kind = rng.random()
        if kind < 0.45 and english:
            out.append(rng.choice(english))
            continue
        script = rng.choice(sorted(SYLLABLES))
        lex = lexicons[script]
        n = rng.randint(3, 14)
        words = [lex[min(int(rng.paretovariate(1.1)) - 1, len(lex) - 1)] for _ in range(n)]
        sep = "" if script in ("cjk", "thai") else " "
        line = sep.join(words)
        if rng.random() < 0.2:
            line += " " + str(rng.randint(0, 10 ** rng.randint(1, 6)))
        if rng.random() < 0.1:
            line += " " + rng.choice(EMOJI)
        out.append(line)
    return out


# ---------------------------------------------------------------------------------------------
# Models

GEMMA_USER_DEFINED = (
    ["<mask>", "[@BOS@]", "<unused0>", "<unused1>", "<unused2>", "<start_of_turn>", "<end_of_turn>"]
    + ["\n" * k for k in range(1, 6)]
    + ["▁" * k for k in range(2, 6)]
    + ["\t", "\t\t", "<table>", "<tr>", "<td>", "</td>", "</tr>", "<h1>", "<b>", "</b>"]
)
PALIGEMMA_EXTRA = [f"<loc{i:04d}>" for i in range(1024)] + [f"<seg{i:03d}>" for i in range(128)] + ["<image>"]

MODELS = {
    # Gemma's exact normalizer/trainer settings, small vocabulary.
    "gemma_bpe_2k": dict(vocab_size=2000, gemma=True),
    # Same settings, larger vocabulary.
    "gemma_bpe_6k": dict(vocab_size=6000, gemma=True),
    # Non-Gemma whitespace handling (dummy prefix, extra-whitespace removal), no digit split.
    "dummy_prefix_bpe_1k": dict(vocab_size=1000, gemma=False),
}


def train(name, vocab_size, gemma, sentences):
    buf = io.BytesIO()
    kwargs = dict(
        sentence_iterator=iter(sentences),
        model_writer=buf,
        model_type="bpe",
        vocab_size=vocab_size,
        byte_fallback=True,
        character_coverage=0.9995,
        normalization_rule_name="identity",
        pad_id=0, eos_id=1, bos_id=2, unk_id=3,
        pad_piece="<pad>", eos_piece="<eos>", bos_piece="<bos>", unk_piece="<unk>",
        num_threads=1,
        input_sentence_size=len(sentences),
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    if gemma:
        kwargs.update(
            add_dummy_prefix=False, remove_extra_whitespaces=False, split_digits=True,
            allow_whitespace_only_pieces=True, user_defined_symbols=GEMMA_USER_DEFINED,
            split_by_whitespace=True, split_by_unicode_script=True, split_by_number=True,
        )
    else:
        kwargs.update(
            add_dummy_prefix=True, remove_extra_whitespaces=True, split_digits=False,
            user_defined_symbols=["<start_of_turn>", "<end_of_turn>"],
        )
    spm.SentencePieceTrainer.train(**kwargs)
    m = model_pb2.ModelProto()
    m.ParseFromString(buf.getvalue())
    for p in PALIGEMMA_EXTRA:
        piece = m.pieces.add()
        piece.piece = p
        piece.score = 0.0
        piece.type = model_pb2.ModelProto.SentencePiece.USER_DEFINED
    return m.SerializeToString()


def to_tokenizer_json(model_path, out_dir):
    """transformers converts a folder holding only tokenizer.model, then saves tokenizer.json."""
    import shutil
    from transformers import GemmaTokenizer
    with tempfile.TemporaryDirectory() as src:
        shutil.copy(model_path, os.path.join(src, "tokenizer.model"))
        tok = GemmaTokenizer.from_pretrained(src)
        tok.save_pretrained(out_dir)
    return tok


# ---------------------------------------------------------------------------------------------
# Test corpus


def test_corpus(rng):
    c = ["", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "a", "ab", "hello", " hello", "hello ",
         "  hello  world  ", "Hello, world!", "hello\tworld", "tab\t\t\tseparated", "line\nbreak\n\n\n\nmany",
         "trailing spaces     ", "     leading spaces", "x" * 300, "ab" * 100, "▁", "▁▁ ▁", "_▁_",
         "caption en", "caption es", "describe en", "ocr", "answer en what is this?", "question en where?",
         "detect cat", "detect cat ; dog", "detect person ; car ; traffic light", "segment the red car",
         "segment cat", "<image><image>caption en\n", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>",
         "text <bos> inside", "<eos><eos>", "a<unk>b", "<pad> padding", "<start_of_turn>user\nhi<end_of_turn>",
         "<loc0000>", "<loc1023>", "<loc0000><loc0512><loc1023><loc0001> cat", "<seg000><seg127>",
         "<loc0100><loc0200><loc0300><loc0400> dog ; <loc0010><loc0020><loc0030><loc0040> cat",
         "<loc1024>", "<loc123>", "<seg128>", "<image", "image>", "<<image>>", "<imag e>", "<image> <image>",
         "12345", "3.14159", "2024-05-17", "1,000,000", "phone: +1 (555) 010-9999", "0", "007",
         "naïve café résumé", "Ärger Öl Übel ß", "Привет, мир!", "Καλημέρα κόσμε", "مرحبا بالعالم",
         "שלום עולם", "नमस्ते दुनिया", "你好，世界", "こんにちは世界", "안녕하세요 세계", "สวัสดีครับ",
         "😀", "👩‍💻", "🇫🇷🇩🇪", "👍🏽 ok", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "\u200b\u200d", "\x00\x01\x7f", "é" * 50,
         "Ω≈ç√∫˜µ≤≥÷", "\u0301e", "e\u0301", "ﬁ ligature", "Ⅻ", "①②③", "\U0010ffff", "\ufeffbom",
         "mixed English и русский и 中文 and العربية 123 😀", "<table><tr><td>x</td></tr></table>",
         "<h1>Title</h1>", "<b>bold</b>", "[@BOS@]", "<unused0><unused2>", "\n\n\n\n\n\n\n\n",
         "     ", "\t\t\t\t\t", " \t \n ", "end with newline\n", "\ncaption en\n"]
    specials = ["<image>", "<bos>", "<eos>", "<loc0042>", "<seg007>", "<start_of_turn>", "\n\n", "<loc1023>"]
    pieces = [
        "the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog", "tokenizer", "model", "vocabulary",
        "Привет", "мир", "κόσμε", "مرحبا", "שלום", "नमस्ते", "你好", "世界", "こんにちは", "안녕", "😀", "🚀",
        "123", "4567", "3.5", "naïve", "façade", "Zürich", "Ελλάδα", "日本語", "ß", "ø", "ÿ", "¿qué?", "¡sí!",
    ]
    seps = [" ", "  ", "", "\t", "\n", " \n", "   ", ", ", ". ", "\n\n"]
    while len(c) < 2500:
        r = rng.random()
        if r < 0.55:
            n = rng.randint(1, 12)
            s = "".join(rng.choice(pieces) + rng.choice(seps) for _ in range(n))
            if rng.random() < 0.3:
                s = rng.choice(specials) + s
            if rng.random() < 0.2:
                pos = rng.randint(0, len(s))
                s = s[:pos] + rng.choice(specials) + s[pos:]
            if rng.random() < 0.2:
                s = rng.choice([" ", "  ", "\n", "\t"]) + s
        elif r < 0.75:
            # random code points from many blocks (byte-fallback heavy)
            blocks = [(0x20, 0x7e), (0xa0, 0x24f), (0x370, 0x3ff), (0x400, 0x4ff), (0x590, 0x6ff), (0x900, 0x97f),
                      (0x3040, 0x30ff), (0x4e00, 0x9fff), (0xac00, 0xd7a3), (0x1f300, 0x1faff), (0x10000, 0x1ffff)]
            s = ""
            for _ in range(rng.randint(1, 20)):
                lo, hi = rng.choice(blocks)
                ch = chr(rng.randint(lo, hi))
                if 0xd800 <= ord(ch) <= 0xdfff:
                    continue
                s += ch
                if rng.random() < 0.2:
                    s += " "
        elif r < 0.9:
            prompt = rng.choice(["caption en", "caption fr", "ocr", "answer en what color is the car?",
                                 "detect car ; person", "segment dog", "describe en", "question de Wo ist das?"])
            s = "<image>" * rng.randint(0, 4) + "<bos>" * (rng.random() < 0.1) + prompt + "\n"
            if rng.random() < 0.5:
                locs = "".join(f"<loc{rng.randint(0, 1023):04d}>" for _ in range(4))
                segs = "".join(f"<seg{rng.randint(0, 127):03d}>" for _ in range(rng.choice([0, 16])))
                s += locs + segs + " " + rng.choice(["cat", "dog", "car"])
        else:
            s = str(rng.randint(0, 10 ** rng.randint(1, 15))) + rng.choice(["", " ", ".", ",5", "%", " km"])
            s = s * rng.randint(1, 3)
        c.append(s)
    return c


def main():
    rng = random.Random(SEED)
    sentences = training_text(rng)
    corpus = test_corpus(random.Random(SEED + 1))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "corpus.json"), "w", encoding="utf-8") as f:
        json.dump(corpus, f, ensure_ascii=False, indent=0)

    for name, spec in MODELS.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model_bytes = train(name, spec["vocab_size"], spec["gemma"], sentences)
        model_path = os.path.join(d, "tokenizer.model")
        with open(model_path, "wb") as f:
            f.write(model_bytes)
        sp = spm.SentencePieceProcessor(model_file=model_path)
        sp_ids = [sp.encode(s) for s in corpus]
        differs = {}
        if not spec["gemma"]:
            write_expected(d, name, sp, corpus, sp_ids, differs)
            continue
        with tempfile.TemporaryDirectory() as tmp:
            to_tokenizer_json(model_path, tmp)
            with open(os.path.join(tmp, "tokenizer.json"), encoding="utf-8") as f:
                tj = json.load(f)
        with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tj, f, ensure_ascii=False, indent=1)

        # transformers, reading only the tokenizer.json it wrote
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "tokenizer.json"), "w", encoding="utf-8") as f:
                json.dump(tj, f, ensure_ascii=False)
            hf = transformers.GemmaTokenizer.from_pretrained(tmp)
            hf_ids = [hf.encode(s, add_special_tokens=False) for s in corpus]
        differs = {str(i): h for i, (s_, h) in enumerate(zip(sp_ids, hf_ids)) if s_ != h}
        write_expected(d, name, sp, corpus, sp_ids, differs)
        for k in list(differs)[:8]:
            print("   ", repr(corpus[int(k)][:60]), sp.encode(corpus[int(k)], out_type=str)[:12],
                  hf.convert_ids_to_tokens(differs[k])[:12])


def write_expected(d, name, sp, corpus, sp_ids, differs):
        decoded = [sp.decode(ids) for ids in sp_ids]
        # decode cases: random id sequences mixing bytes, normal, user-defined and control pieces
        drng = random.Random(SEED + 2)
        n = sp.get_piece_size()
        byte_ids = [i for i in range(n) if sp.is_byte(i)]
        decode_cases = []
        for _ in range(300):
            ids = []
            for _ in range(drng.randint(1, 12)):
                r = drng.random()
                if r < 0.5:
                    ids.append(drng.choice(byte_ids))
                elif r < 0.6:
                    ids.append(drng.choice([0, 1, 2, 3]))
                else:
                    ids.append(drng.randrange(n))
            decode_cases.append({"ids": ids, "text": sp.decode(ids),
                                 "pieces": [sp.id_to_piece(i) for i in ids]})
        # utf-8 sequences split into bytes, valid and invalid
        for seq in [b"\xe4\xbd\xa0", b"\xf0\x9f\x98\x80", b"\xc3", b"\xe4\xbd", b"\xff", b"\x80\x80", b"\xc3\xa9\xc3",
                    b"\xed\xa0\x80", b"\xc0\xaf", b"\xf4\x90\x80\x80", b"a\xe4\xbdb"]:
            ids = [sp.piece_to_id(f"<0x{b:02X}>") if chr(b) not in "ab" else sp.piece_to_id(chr(b)) for b in seq]
            decode_cases.append({"ids": ids, "text": sp.decode(ids), "pieces": [sp.id_to_piece(i) for i in ids]})
        expected = {
            "model": name,
            "pieces": n,
            "sentencepiece_ids": sp_ids,
            "transformers_ids_where_different": differs,
            "sentencepiece_decode": decoded,
            "decode_cases": decode_cases,
        }
        with open(os.path.join(d, "expected.json"), "w", encoding="utf-8") as f:
            json.dump(expected, f, ensure_ascii=False, separators=(",", ":"))
        print(f"{name}: {n} pieces, {len(differs)} strings where transformers differs from sentencepiece")


if __name__ == "__main__":
    main()
