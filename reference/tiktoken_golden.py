#!/usr/bin/env python3
"""Writes tests/fixtures/tokenizer_golden.json: tiktoken's GPT-2 token ids for a varied corpus, and
for the whole shipped Shakespeare text, which `tests/tokenizer.rs` checks our tokenizer against.

Offline: the encoding is built from data/gpt2/{encoder.json,vocab.bpe}, with GPT-2's original split
pattern. Needs `pip install tiktoken` (made with tiktoken 0.14.0).

    python3 reference/tiktoken_golden.py
"""
import glob
import json
import os
import random

import tiktoken
import tiktoken.load

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# tiktoken's own r50k_base pattern: an optimised rewrite of the same rules (possessive runs, `\s++$`).
TIKTOKEN_R50K_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""


def gpt2_encoding(pattern=GPT2_PATTERN):
    ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
        os.path.join(ROOT, "data/gpt2/vocab.bpe"), os.path.join(ROOT, "data/gpt2/encoder.json"))
    return tiktoken.Encoding(name="gpt2", pat_str=pattern, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": 50256})


def fnv1a64(ids):
    """FNV-1a 64 over the ids as little-endian u32 bytes (tests/tokenizer.rs computes the same)."""
    h = 0xcbf29ce484222325
    for i in ids:
        for b in i.to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def shakespeare_files():
    return sorted(glob.glob(os.path.join(ROOT, "data/shakespeare/*_gut.txt")))


CASES = [
    # English and contractions (GPT-2 only splits off lowercase 's 't 're 've 'm 'll 'd).
    "Hello world",
    "The quick brown fox jumps over the lazy dog.",
    "It's, I'm, you're, we've, they'll, he'd, don't",
    "IT'S HE'LL WE'RE I'M DON'T 'S 'T 'Re 'rE",
    "rock'n'roll ''s '''re ' s 'x 'sa 'llama 'ved",
    "O'Neill's dog's bone; the dogs' bones",
    # Whitespace runs: spaces, tabs, newlines, trailing spaces, CRLF, Unicode spaces.
    "a  b   c    d",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\tand\t\ttabs\t",
    "line one\nline two\n\nline four\n\n\n",
    "windows\r\nline\r\n\r\nends\r\n",
    "nbsp\u00a0here and\u2003em space and\u3000ideographic\u205fmath\u2028line\u2029para",
    "\u00a0\u00a0x \u00a0y\u00a0 z",
    " \n \n\t x",
    "\n",
    " ",
    "",
    "\t\t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85end",
    # Numbers, including other scripts' digits and number-like letters.
    "1234567890 3.14159 1,000,000 -42 +7e10",
    "Arabic-Indic \u0661\u0662\u0663 Devanagari \u0967\u0968\u0969 fullwidth \uff11\uff12\uff13",
    "Roman \u2160\u2161\u2162 fractions \u00bd\u00be superscript x\u00b2\u00b3 circled \u2460\u2461",
    "a1b2c3 123abc abc123 \u0663x",
    # Code.
    "fn main() {\n    let x: Vec<u32> = vec![1, 2, 3];\n    println!(\"{:?}\", x);\n}\n",
    "def f(x):\n\treturn x**2 + 1  # square\n",
    "if (a && b || !c) { return -1; } // done <= >= != ==",
    "<html><body class=\"main\">&nbsp;&amp;</body></html>",
    "https://example.com/path?query=1&other=two#frag",
    # The special token's text is ordinary text for encode.
    "before <|endoftext|> after",
    "<|endoftext|>",
    # Accents, Latin-1 and other European scripts.
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 \u00fcber Stra\u00dfe \u0141\u00f3d\u017a \u00c5ngstr\u00f6m",
    "Cafe\u0301 (combining acute) vs Caf\u00e9",
    "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440! \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac",
    # CJK.
    "\u4f60\u597d\uff0c\u4e16\u754c\uff01\u8fd9\u662f\u4e00\u4e2a\u6d4b\u8bd5\u3002",
    "\u65e5\u672c\u8a9e\u306e\u6587\u7ae0\u3067\u3059\u3002\u30ab\u30bf\u30ab\u30ca\u3068\u3072\u3089\u304c\u306a",
    "\ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4",
    # Combining marks: Hindi, Thai (marks are Mn/Mc, so they split letter runs).
    "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e, \u0939\u093f\u0928\u094d\u0926\u0940",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a \u0e20\u0e32\u0e29\u0e32\u0e44\u0e17\u0e22",
    "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u05e9\u05dc\u05d5\u05dd",
    # Emoji: single, with skin tone, ZWJ families, flags, keycaps, variation selectors.
    "I \u2764\ufe0f Rust \U0001F980\U0001F680!",
    "\U0001F44B\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family",
    "\U0001F1FA\U0001F1F8\U0001F1EF\U0001F1F5 flags 1\ufe0f\u20e3 #\ufe0f\u20e3",
    "\U0001F3F3\ufe0f\u200d\U0001F308\U0001F9D1\u200d\U0001F4BB",
    # Unusual characters: control, private use, astral letters, Unicode 14-16 additions.
    "\x00\x01\x7f null and del",
    "\ue000\uf8ff private \U00010400\U00010428 deseret \U0001D400\U0001D41A math",
    "\u0870\u0871 arabic-ext-b \U00011F00 kawi \U0001E4D0 nag-mundari \u1c89\u1c8a cyrillic-ext-d",
    "\U000105C0\U000105C1 todhri \U00011BC0 sunuwar \U0001E5D0 ol-onal \U00016D40 kirat",
    "\u2028\u2029\u200b\u200c\u200d\ufeff zero-widths",
    # Long words and repetition.
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "================================================================",
    "                                                                x",
    "!!!???...,,,;;;:::",
    # Pieces long enough for the heap-based BPE (src/tokenizer/bpe.rs, LONG_WORD = 256 bytes).
    "a" * 3000,
    "".join(random.Random(5).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(3000)),
    "ab" * 700 + " " * 1000 + "x" + "=" * 1000 + "\U0001F980" * 300,
    # A piece of Shakespeare.
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
    "The slings and arrows of outrageous fortune,\nOr to take arms against a sea of troubles\n",
]


# Pieces for random strings: every rule of the split pattern meets every other at piece edges.
PALETTE = ["a", "Z", "hello", " the", "'s", "'S", "'ll", "'re", "'", "1", "42", " ", "  ", "   ", "\t", "\n",
           "\r\n", "\u00a0", "\u3000", "\u2028", "\x0b", ".", "!?", "<|endoftext|>", "\u00e9", "e\u0301", "\u00df",
           "\u65e5\u672c", "\ud55c", "\u0928\u092e\u0938\u094d\u0924\u0947", "\u094d", "\u0e2a\u0e27\u0e31",
           "\u0661\u0662", "\u216b", "\u00bd", "\U0001F44B\U0001F3FD", "\U0001F468\u200d\U0001F469",
           "\U0001F1FA\U0001F1F8", "\u200d", "\x00", "\U0001D400", "( ", " )", "--", "\u2019s"]


def random_cases(n, seed=1234):
    """n random strings (seeded) from PALETTE and arbitrary code points."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randrange(1, 25)):
            if rng.random() < 0.2:
                cp = rng.randrange(0x110000)
                if not 0xD800 <= cp <= 0xDFFF:
                    parts.append(chr(cp))
            else:
                parts.append(rng.choice(PALETTE))
        out.append("".join(parts))
    return out


def main():
    enc = gpt2_encoding()
    cases = [{"text": t, "ids": enc.encode_ordinary(t)} for t in CASES + random_cases(300)]
    r50k = gpt2_encoding(TIKTOKEN_R50K_PATTERN)
    for c in cases:
        assert enc.decode(c["ids"]) == c["text"], c["text"]
        assert r50k.encode_ordinary(c["text"]) == c["ids"], c["text"]

    files = shakespeare_files()
    all_ids = []
    per_file = []
    for path in files:
        with open(path, encoding="utf-8") as f:
            ids = enc.encode_ordinary(f.read())
        per_file.append({"file": os.path.basename(path), "tokens": len(ids)})
        all_ids.extend(ids)
    shakespeare = {
        "files": per_file,
        "total_tokens": len(all_ids),
        "fnv1a64": f"{fnv1a64(all_ids):016x}",
        "first_ids": all_ids[:256],
    }
    out = {
        "generator": "reference/tiktoken_golden.py",
        "tiktoken_version": tiktoken.__version__,
        "pattern": GPT2_PATTERN,
        "cases": cases,
        "shakespeare": shakespeare,
    }
    path = os.path.join(ROOT, "tests/fixtures/tokenizer_golden.json")
    # One case per line, so a diff of the fixture shows which cases changed.
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        for key in ["generator", "tiktoken_version", "pattern", "shakespeare"]:
            f.write(f" {json.dumps(key)}: {json.dumps(out[key])},\n")
        f.write(' "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c) for c in cases))
        f.write("\n ]\n}\n")
    print(f"wrote {path}: {len(cases)} cases, Shakespeare {len(files)} files, {len(all_ids)} tokens")


if __name__ == "__main__":
    main()
