"""Hugging Face parity fixtures: small random GPT2LMHeadModels saved the ways the Hub has them, and
their losses on fixed tokens as `transformers` computes them. `tests/hf.rs` loads the same files with
our reader and checks our losses against these.

    python3 reference/hf_reference.py                 # writes tests/fixtures/hf/ (offline, seconds)
    python3 reference/hf_reference.py --check-export DIR --model NAME
        # loads DIR (written by `gpt2 export --hf DIR --init tests/fixtures/hf/NAME`) with
        # AutoModelForCausalLM, AutoTokenizer and pipeline("text-generation"), and compares its losses
        # with the fixture's and its tokenizer's ids with tiktoken's.

Needs: pip install torch transformers safetensors tiktoken (CPU torch is enough).
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import save_file


def gpt2_encoding():
    """tiktoken's "gpt2" encoding, built offline from data/gpt2 (its own files need a download)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from tiktoken_golden import TIKTOKEN_R50K_PATTERN, gpt2_encoding as build

    return build(TIKTOKEN_R50K_PATTERN)

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "hf")

# name: (config, how it is saved)
MODELS = {
    # GPT-2's vocabulary, so the HellaSwag and tokenizer checks can use it; bf16 keeps the file small
    "gpt2vocab_bf16": (dict(n_layer=2, n_head=2, n_embd=16, n_positions=64, vocab_size=50257), "save_pretrained_bf16"),
    # what save_pretrained writes today: transformer. prefix, no lm_head.weight, f32
    "tiny_prefixed": (dict(n_layer=2, n_head=2, n_embd=32, n_positions=32, vocab_size=97), "save_pretrained"),
    # openai-community/gpt2's own layout: no prefix, the attn.bias / attn.masked_bias buffers, lm_head.weight kept
    "tiny_openai_style": (dict(n_layer=3, n_head=4, n_embd=32, n_positions=24, vocab_size=300), "openai_style"),
}

TEXTS = [
    "Hello world! The quick brown fox jumps over the lazy dog.",
    " leading space, trailing space \n\nnew lines\tand tabs",
    "Numbers 1234567 and 3.14159; unicode: café, naïve, 東京, emoji 🤖.",
    "<|endoftext|> is plain text here",
    "I'm sure they'll've done it: don't, won't, y'all.",
]


def tokens_for(config, seed):
    g = torch.Generator().manual_seed(seed)
    b, t = 2, min(16, config["n_positions"])
    return torch.randint(0, config["vocab_size"], (b, t + 1), generator=g)


def losses_of(model, tokens):
    """Per-position cross-entropy of predicting tokens[:, 1:] from tokens[:, :-1], float32."""
    with torch.no_grad():
        logits = model(tokens[:, :-1]).logits.float()
        losses = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.size(-1)), tokens[:, 1:].reshape(-1), reduction="none"
        )
    return losses.reshape(tokens.size(0), -1)


def build(name, config, how, seed):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**config)).eval()
    # random biases and LayerNorm parameters too, so a mixed-up tensor cannot hide behind zeros and ones
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if not pname.endswith("wte.weight"):
                p.add_(torch.randn_like(p) * 0.05)
    out = os.path.join(FIXTURES, name)
    os.makedirs(out, exist_ok=True)
    if how == "save_pretrained_bf16":
        model = model.to(torch.bfloat16)
        model.save_pretrained(out, safe_serialization=True)
        model = model.float()  # the loss below is computed in f32 from the bf16 weights
    elif how == "save_pretrained":
        model.save_pretrained(out, safe_serialization=True)
    else:
        model.config.save_pretrained(out)
        sd = {k.removeprefix("transformer."): v.contiguous() for k, v in model.state_dict().items()}
        sd["lm_head.weight"] = model.transformer.wte.weight.detach().clone()
        maxt = config["n_positions"]
        for layer in range(config["n_layer"]):
            sd[f"h.{layer}.attn.bias"] = torch.tril(torch.ones(maxt, maxt)).view(1, 1, maxt, maxt)
            sd[f"h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
        save_file(sd, os.path.join(out, "model.safetensors"), metadata={"format": "pt"})
    # drop what save_pretrained adds that we neither need nor want committed
    for extra in ["generation_config.json"]:
        if os.path.exists(os.path.join(out, extra)):
            os.remove(os.path.join(out, extra))
    tokens = tokens_for(config, seed)
    losses = losses_of(model, tokens)
    # the same in float64, to show how much of a difference is float rounding
    losses64 = losses_of(model.double(), tokens)
    print(
        f"{name}: {sum(p.numel() for p in model.parameters())} params, loss {losses.mean().item():.6f}, "
        f"f32 vs f64 max diff {(losses.double() - losses64).abs().max().item():.2e}"
    )
    return {
        "config": config,
        "tokens": tokens.tolist(),
        "losses": losses.tolist(),
        "mean_loss": losses.mean().item(),
    }


def write_fixtures():
    import tiktoken
    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    fixture = {"models": {}}
    for seed, (name, (config, how)) in enumerate(MODELS.items()):
        fixture["models"][name] = build(name, config, how, seed + 1)
    enc = gpt2_encoding()
    fixture["texts"] = [{"text": t, "ids": enc.encode(t, allowed_special=set(), disallowed_special=())} for t in TEXTS]
    path = os.path.join(FIXTURES, "hf_fixture.json")
    with open(path, "w") as f:
        json.dump(fixture, f, indent=1)
    print(f"wrote {path}")


def check_export(directory, name):
    """Loads an exported directory as users do and compares it with the fixture."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
    import tiktoken

    with open(os.path.join(FIXTURES, "hf_fixture.json")) as f:
        fixture = json.load(f)
    want = fixture["models"][name]
    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True).float().eval()
    tokens = torch.tensor(want["tokens"])
    losses = losses_of(model, tokens)
    diff = (losses - torch.tensor(want["losses"])).abs().max().item()
    print(f"{directory}: transformers loss {losses.mean().item():.6f}, fixture {want['mean_loss']:.6f}, max abs diff per position {diff:.2e}")
    ok = diff < 1e-4
    if want["config"]["vocab_size"] == 50257:
        tok = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        enc = gpt2_encoding()
        for t in TEXTS:
            # transformers' GPT-2 tokenizer (the Hub's too) reads "<|endoftext|>" in text as the special token
            ids, expected = tok(t)["input_ids"], enc.encode(t, allowed_special="all")
            if ids != expected:
                print(f"tokenizer differs from tiktoken on {t!r}: {ids} vs {expected}")
                ok = False
        print(f"AutoTokenizer ({type(tok).__name__}) gives tiktoken's ids on {len(TEXTS)} texts: {ok}")
        gen = pipeline("text-generation", model=directory, tokenizer=directory, device="cpu")
        text = gen("Hello, I am", max_new_tokens=8, do_sample=False)[0]["generated_text"]
        print(f"pipeline('text-generation') ran: {text!r}")
    print("export check passed" if ok else "export check FAILED")
    return ok


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--check-export")
    ap.add_argument("--model", default="gpt2vocab_bf16")
    args = ap.parse_args()
    if args.check_export:
        sys.exit(0 if check_export(args.check_export, args.model) else 1)
    write_fixtures()
