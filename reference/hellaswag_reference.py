"""HellaSwag fixture: a small file in both formats (rowanz's jsonl and llm.c's eval .bin), scored with
transformers exactly as llm.c's dev/data/hellaswag.py scores it. tests/eval.rs checks that
`gpt2 eval --hellaswag` gives the same per-ending losses, acc and acc_norm.

    python3 reference/hf_reference.py          # first: writes the model this scores
    python3 reference/hellaswag_reference.py   # writes tests/fixtures/hellaswag/

The examples are made up here (the real hellaswag_val.jsonl cannot be downloaded on this machine) in
the same shape: ctx, 4 endings, label. The scoring below is a copy of llm.c's render_example and
evaluate loop, with the model swapped for our tiny fixture model.
"""

import json
import os
import sys

import numpy as np
import tiktoken
import torch
from torch.nn import functional as F
from transformers import GPT2LMHeadModel


def gpt2_encoding():
    """tiktoken's "gpt2" encoding, built offline from data/gpt2 (its own files need a download)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tiktoken_golden import TIKTOKEN_R50K_PATTERN, gpt2_encoding as build

    return build(TIKTOKEN_R50K_PATTERN)

ROOT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
OUT = os.path.join(ROOT, "hellaswag")
MODEL = os.path.join(ROOT, "hf", "gpt2vocab_bf16")

enc = gpt2_encoding()

EXAMPLES = [
    ("A man is sitting on a roof. he", ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.", "is holding a rubik's cube.", "starts pulling up roofing on a roof."], 3),
    ("A woman is outside with a bucket and a dog. The dog is running around trying to avoid a bath. she", ["rinses the bucket off with soap and blow dry the dog's head.", "uses a hose to keep it from getting soapy.", "gets the dog wet, then it runs away again.", "gets into a bath tub with the dog."], 2),
    ("Making a cake: The baker mixes flour and sugar in a bowl. Then she", ["cracks two eggs into the mixture.", "drives to the airport.", "paints the ceiling blue.", "sings loudly at the dog."], 0),
    ("How to tie a tie. Drape the tie around your neck", ["with the wide end on your right.", "and jump into the pool.", "then eat it.", "while the car is running quickly down the hill."], 0),
    ("The kids run onto the field. They", ["kick the ball toward the goal.", "fly away.", "are playing soccer with their coach, who blows a whistle.", "read."], 2),
    ("Café au lait: she pours the milk", ["into the coffee, slowly.", "onto the floor.", "über alles — 東京.", "and waits."], 0),
    ("He lifts the barbell over his head and", ["drops it.", "holds it there for three seconds before lowering it to the floor.", "smiles at the camera.", "walks away."], 1),
    ("A person is slicing tomatoes on a board. They", ["put the slices in a salad.", "juggle them.", "throw the knife.", "climb a tree quickly."], 0),
    ("Two men are fencing in a gym. One", ["lunges forward and touches the other's chest.", "sits down.", "eats a sandwich while the other waits patiently.", "leaves."], 0),
]


def render_example(example):
    """llm.c's render_example: 4 rows of context + " " + ending, padded; the mask marks the ending."""
    ctx, label, endings = example["ctx"], example["label"], example["endings"]
    data = {"label": label, "ctx_tokens": None, "ending_tokens": []}
    ctx_tokens = enc.encode(ctx)
    data["ctx_tokens"] = ctx_tokens
    tok_rows, mask_rows = [], []
    for end in endings:
        end_tokens = enc.encode(" " + end)
        tok_rows.append(ctx_tokens + end_tokens)
        mask_rows.append([0] * len(ctx_tokens) + [1] * len(end_tokens))
        data["ending_tokens"].append(end_tokens)
    max_len = max(len(row) for row in tok_rows)
    tokens = torch.zeros((4, max_len), dtype=torch.long)
    mask = torch.zeros((4, max_len), dtype=torch.long)
    for i, (tok_row, mask_row) in enumerate(zip(tok_rows, mask_rows)):
        tokens[i, : len(tok_row)] = torch.tensor(tok_row)
        mask[i, : len(mask_row)] = torch.tensor(mask_row)
    return data, tokens, mask, label


def write_evalfile(filename, datas):
    """llm.c's dev/data/data_common.py write_evalfile, as written there."""
    header = np.zeros(256, dtype=np.int32)
    header[0], header[1], header[2] = 20240522, 1, len(datas)
    longest_example_bytes = 0
    full_stream = []
    for idx, data in enumerate(datas):
        stream = [2**16 - 1, 0, idx, data["label"], len(data["ending_tokens"])]
        stream.append(len(data["ctx_tokens"]))
        stream.extend(data["ctx_tokens"])
        for end_tokens in data["ending_tokens"]:
            stream.append(len(end_tokens))
            stream.extend(end_tokens)
        nbytes = len(stream) * 2
        stream[1] = nbytes
        longest_example_bytes = max(longest_example_bytes, nbytes)
        full_stream.extend(stream)
    header[3] = longest_example_bytes
    with open(filename, "wb") as f:
        f.write(header.tobytes())
        f.write(np.array(full_stream, dtype=np.uint16).tobytes())


@torch.no_grad()
def main():
    os.makedirs(OUT, exist_ok=True)
    model = GPT2LMHeadModel.from_pretrained(MODEL, local_files_only=True).float().eval()
    examples = [{"ctx": c, "endings": e, "label": l, "split": "val"} for c, e, l in EXAMPLES]
    with open(os.path.join(OUT, "hellaswag_small.jsonl"), "w") as f:
        for ex in examples:
            f.write(json.dumps(ex) + "\n")
    datas, results = [], []
    num_correct = num_correct_norm = 0
    for example in examples:
        data, tokens, mask, label = render_example(example)
        datas.append(data)
        # llm.c's evaluate loop
        logits = model(tokens).logits
        shift_logits = logits[..., :-1, :].contiguous()
        shift_tokens = tokens[..., 1:].contiguous()
        shift_losses = F.cross_entropy(
            shift_logits.view(-1, shift_logits.size(-1)), shift_tokens.view(-1), reduction="none"
        ).view(tokens.size(0), -1)
        shift_mask = mask[..., 1:].contiguous()
        sum_loss = (shift_losses * shift_mask).sum(dim=1)
        avg_loss = sum_loss / shift_mask.sum(dim=1)
        pred, pred_norm = sum_loss.argmin().item(), avg_loss.argmin().item()
        num_correct += int(pred == label)
        num_correct_norm += int(pred_norm == label)
        results.append({"sum_loss": sum_loss.tolist(), "mean_loss": avg_loss.tolist(), "pred": pred, "pred_norm": pred_norm})
    write_evalfile(os.path.join(OUT, "hellaswag_small.bin"), datas)
    n = len(examples)
    fixture = {"examples": results, "acc": num_correct / n, "acc_norm": num_correct_norm / n, "n": n}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"{n} examples: acc {num_correct / n:.4f} acc_norm {num_correct_norm / n:.4f}")
    for r in results:
        s = sorted(r["mean_loss"])
        print(f"  mean losses {['%.4f' % x for x in r['mean_loss']]} pred_norm {r['pred_norm']} (margin {s[1] - s[0]:.2e})")


if __name__ == "__main__":
    main()
