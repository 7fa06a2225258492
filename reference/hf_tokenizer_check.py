"""Checks that a Hugging Face directory written by `gpt2 export --hf DIR --tokenizer TOK` gives our
token ids: `transformers`' AutoTokenizer loads DIR and encodes held-out text as `gpt2 tokenize
--tokenizer TOK` does, special tokens included. Needs no torch:

    python3 -m venv /tmp/hf-venv && /tmp/hf-venv/bin/pip install transformers tokenizers
    target/release/gpt2 export --init MODEL --hf /tmp/hf --tokenizer TOK
    /tmp/hf-venv/bin/python reference/hf_tokenizer_check.py --hf /tmp/hf --tokenizer TOK --text FILE...

Use text the tokenizer was not trained on (for one trained on the default text's train part,
data/shakespeare/alls_well_that_ends_well_gut.txt and antony_and_cleopatra_gut.txt are the held-out
validation text). For each file it checks:
  1. the text's ids: AutoTokenizer (the fast tokenizer, from tokenizer.json) and, when given
     --slow too, GPT2Tokenizer from vocab.json + merges.txt, against `gpt2 tokenize`;
  2. the special token: <|endoftext|>'s id (eos, bos) is ours, and "<|endoftext|>" + the text
     encodes as `prepare` writes a document (our EOT id, then the text's ids);
  3. "<|endoftext|>" inside the text, with split_special_tokens=True, is ordinary text as in our
     `tokenize` (which never produces a special id from text);
  4. decoding our ids gives the text back.
Exits 1 at the first difference, naming the file and the first position where the ids differ.
"""

import argparse
import subprocess
import sys
import time

from transformers import AutoTokenizer

EOT_TEXT = "<|endoftext|>"


def our_ids(gpt2, tokenizer, path):
    out = subprocess.run([gpt2, "tokenize", path, "--tokenizer", tokenizer], check=True, capture_output=True)
    return [int(x) for x in out.stdout.split()]


def our_eot(gpt2, tokenizer, tmp):
    """Our EOT id: the one id of the tokenizer that `tokenize --decode` writes as "<|endoftext|>" and
    that is no byte (ids 0..255 are the bytes, the special tokens come next)."""
    for i in range(256, 256 + 64):
        with open(tmp, "w") as f:
            f.write(str(i))
        out = subprocess.run([gpt2, "tokenize", "--decode", tmp, "--tokenizer", tokenizer], capture_output=True)
        if out.returncode == 0 and out.stdout == EOT_TEXT.encode():
            return i
    sys.exit(f"{tokenizer}: no special token {EOT_TEXT} among ids 256..319")


def same(name, ours, theirs):
    if ours == theirs:
        return
    first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
    sys.exit(
        f"FAIL {name}: {len(ours)} ids (ours) vs {len(theirs)} (Hugging Face); first difference at {first}: "
        f"ours {ours[first:first + 8]}, theirs {theirs[first:first + 8]}"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hf", required=True, help="a directory written by `gpt2 export --hf DIR --tokenizer TOK`")
    ap.add_argument("--tokenizer", required=True, help="the tokenizer directory given to export")
    ap.add_argument("--text", nargs="+", required=True, help="held-out text files")
    ap.add_argument("--gpt2", default="target/release/gpt2", help="our binary")
    ap.add_argument("--slow", action="store_true", help="also check GPT2Tokenizer (vocab.json + merges.txt)")
    args = ap.parse_args()

    start = time.time()
    tokenizers = {"AutoTokenizer": AutoTokenizer.from_pretrained(args.hf)}
    if args.slow:
        tokenizers["GPT2Tokenizer (slow)"] = AutoTokenizer.from_pretrained(args.hf, use_fast=False)
    eot = our_eot(args.gpt2, args.tokenizer, "/tmp/hf_tokenizer_check_ids.txt")
    total = 0
    for name, hf in tokenizers.items():
        # 2. the special token's id
        for what, got in [("eos_token_id", hf.eos_token_id), ("bos_token_id", hf.bos_token_id),
                          (EOT_TEXT, hf.convert_tokens_to_ids(EOT_TEXT))]:
            if got != eot:
                sys.exit(f"FAIL {name}: {what} is {got}, ours is {eot}")
        for path in args.text:
            with open(path, encoding="utf-8") as f:
                text = f.read()
            ours = our_ids(args.gpt2, args.tokenizer, path)
            # 1. the text's ids
            same(f"{name}, {path}", ours, hf.encode(text))
            # 2. a document as `prepare` writes it: EOT, then the text
            same(f"{name}, {EOT_TEXT} + {path}", [eot] + ours, hf.encode(EOT_TEXT + text))
            # 3. the special token's text inside the text is ordinary text, as in our tokenize
            mid = len(text) // 2
            inside = text[:mid] + EOT_TEXT + text[mid:]
            with open("/tmp/hf_tokenizer_check_inside.txt", "w", encoding="utf-8") as f:
                f.write(inside)
            ours_inside = our_ids(args.gpt2, args.tokenizer, "/tmp/hf_tokenizer_check_inside.txt")
            if eot in ours_inside:
                sys.exit(f"FAIL: our tokenize produced the special id {eot} from text")
            same(f"{name}, {path} with {EOT_TEXT} inside (split_special_tokens)", ours_inside,
                 hf(inside, split_special_tokens=True)["input_ids"])
            # 4. decoding our ids
            if hf.decode(ours) != text:
                sys.exit(f"FAIL {name}: decoding our ids of {path} does not give the text back")
            total += len(ours)
            print(f"ok {name}: {path}: {len(ours)} ids equal ({len(text.encode())} bytes); "
                  f"{EOT_TEXT} = {eot}; decode gives the text back")
    print(f"all equal: {total} ids over {len(args.text)} files and {len(tokenizers)} tokenizers in "
          f"{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
