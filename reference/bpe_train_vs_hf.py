"""Trains a byte-level BPE tokenizer with Hugging Face `tokenizers`' BpeTrainer on the same text as
`gpt2 tokenizer train`, to compare speed (README, "Train your own tokenizer") and merges.

    python3 -m venv target/hf-venv && target/hf-venv/bin/pip install tokenizers
    /usr/bin/time -v target/hf-venv/bin/python reference/bpe_train_vs_hf.py --input FILE... --vocab-size N --out DIR
    /usr/bin/time -v target/release/gpt2 tokenizer train --input FILE... --vocab-size N --out DIR2

Same setup as ours: GPT-2's pre-tokenizer regex (ByteLevel, no prefix space), the 256 bytes as the
initial alphabet, <|endoftext|> as the one special token. Inputs: .txt (one document) or .jsonl
("text" field). With --compare DIR2, prints how many of the first merges agree with ours (HF
breaks ties between equally frequent pairs its own way, so the lists can differ where counts tie).
"""

import argparse
import json
import time

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers


def documents(paths):
    for path in paths:
        if path.endswith(".jsonl"):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    if line.strip():
                        yield json.loads(line)["text"]
        else:
            with open(path, encoding="utf-8") as f:
                yield f.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", nargs="+", required=True)
    ap.add_argument("--vocab-size", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--compare", help="a directory written by `gpt2 tokenizer train`")
    args = ap.parse_args()

    start = time.time()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=args.vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(documents(args.input), trainer=trainer)
    import os

    os.makedirs(args.out, exist_ok=True)
    tok.save(os.path.join(args.out, "tokenizer.json"))
    print(f"hf tokenizers {args.vocab_size}: trained in {time.time() - start:.2f} s")

    if args.compare:
        theirs = json.load(open(os.path.join(args.out, "tokenizer.json")))["model"]["merges"]
        theirs = [m if isinstance(m, str) else " ".join(m) for m in theirs]
        with open(os.path.join(args.compare, "vocab.bpe"), encoding="utf-8") as f:
            ours = [line.rstrip("\n") for line in f if not line.startswith("#version")]
        same = 0
        for a, b in zip(ours, theirs):
            if a != b:
                break
            same += 1
        common = len(set(ours) & set(theirs))
        print(f"merges: ours {len(ours)}, theirs {len(theirs)}, identical prefix {same}, in both {common}")
        # our tokenizer.json in HF's library: the same ids as our encoder on some text
        ours_tok = Tokenizer.from_file(os.path.join(args.compare, "tokenizer.json"))
        text = next(documents(args.input))[:20000]
        print(f"HF encodes {len(ours_tok.encode(text).ids)} tokens of 20000 chars with our tokenizer.json")


if __name__ == "__main__":
    main()
