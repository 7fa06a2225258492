"""
The PyTorch reference for the Rust GPT-2: it writes the parity fixtures that the Rust tests compare
against (in the spirit of llm.c's train_gpt2.py writing gpt2_124M_debug_state.bin).

It builds a tiny GPT-2 (maxT=16, V=253, Vp=256, L=2, NH=4, C=32), runs one forward/backward pass on
a fixed batch (B=2, T=11) and 10 steps of AdamW, and writes

    tests/fixtures/parity_model.bin   the initial weights, as an llm.c fp32 model file (version 3)
    tests/fixtures/parity_state.bin   the batch, the expected logits, loss and gradients, the 10
                                      training losses and the parameters after the 10 steps

The model is nanoGPT's, written as plain functions over the 16 parameter tensors in llm.c's order and
shapes (layers stacked along a leading L axis), so that what is written to the files is exactly what the
forward pass reads. Everything is float32 on the CPU, single-threaded and deterministic: running

    python3 reference/gpt2_reference.py

from the repository root again writes byte-identical files (with the same torch version).
The byte layout of both files is in reference/README.md.
"""

import math
import os
import struct
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

FIXTURE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")
MODEL_FILE = os.path.join(FIXTURE_DIR, "parity_model.bin")
STATE_FILE = os.path.join(FIXTURE_DIR, "parity_state.bin")

MODEL_MAGIC, MODEL_VERSION_FP32 = 20240326, 3
STATE_MAGIC, STATE_VERSION = 20240327, 2


@dataclass
class Config:
    max_seq_len: int = 16  # maxT
    vocab_size: int = 253  # V
    padded_vocab_size: int = 256  # Vp
    num_layers: int = 2  # L
    num_heads: int = 4  # NH
    channels: int = 32  # C


# sizes of the fixture's batch: T < maxT on purpose, and nothing is a multiple of anything
B, T = 2, 11
NUM_STEPS = 10

# AdamW, as in the GPT-2 reproduction but with a constant learning rate and no gradient clipping
LR, BETA1, BETA2, EPS, WEIGHT_DECAY = 1e-3, 0.9, 0.95, 1e-8, 0.1

# -----------------------------------------------------------------------------------------------
# parameters: the 16 tensors of llm.c's model file, in its order and with its shapes


def param_shapes(cfg):
    """(name, shape) of the 16 parameter tensors, in llm.c's order. Weights are (out, in)."""
    Vp, maxT, L, C = cfg.padded_vocab_size, cfg.max_seq_len, cfg.num_layers, cfg.channels
    return [
        ("wte", (Vp, C)),  # token embedding, also the LM head (tied)
        ("wpe", (maxT, C)),  # position embedding
        ("ln1w", (L, C)),
        ("ln1b", (L, C)),
        ("qkvw", (L, 3 * C, C)),  # rows: [q; k; v]
        ("qkvb", (L, 3 * C)),
        ("attprojw", (L, C, C)),
        ("attprojb", (L, C)),
        ("ln2w", (L, C)),
        ("ln2b", (L, C)),
        ("fcw", (L, 4 * C, C)),
        ("fcb", (L, 4 * C)),
        ("fcprojw", (L, C, 4 * C)),
        ("fcprojb", (L, C)),
        ("lnfw", (C,)),
        ("lnfb", (C,)),
    ]


# the 2-D weights (stacked per layer here) get weight decay; biases and LayerNorm parameters do not
DECAYED = {"wte", "wpe", "qkvw", "attprojw", "fcw", "fcprojw"}


def init_params(cfg, seed=1337):
    """GPT-2's init, then small random perturbations so that every gradient is worth checking.

    Weights ~ N(0, 0.02), the residual projections (attprojw, fcprojw) ~ N(0, 0.02/sqrt(2L)),
    LayerNorm weights 1 and biases 0. Then N(0, 0.1) is added to every LayerNorm weight and bias and
    every linear bias: with the textbook values their gradients would be too special to test much.
    The padded rows V..Vp of wte are random like the others; the loss never reaches them.
    """
    gen = torch.Generator().manual_seed(seed)
    L = cfg.num_layers
    params = {}
    for name, shape in param_shapes(cfg):
        if name in DECAYED:
            std = 0.02 / math.sqrt(2 * L) if name in ("attprojw", "fcprojw") else 0.02
            p = torch.randn(shape, generator=gen) * std
        elif name in ("ln1w", "ln2w", "lnfw"):
            p = torch.ones(shape) + 0.1 * torch.randn(shape, generator=gen)
        else:  # LayerNorm biases and linear biases
            p = torch.zeros(shape) + 0.1 * torch.randn(shape, generator=gen)
        params[name] = p.float().requires_grad_(True)
    return params


# -----------------------------------------------------------------------------------------------
# the model, one function per layer, composed top to bottom in gpt2_forward


def layernorm(x, w, b, eps=1e-5):
    # x (B,T,C), w and b (C): normalize each position over its C channels, then scale and shift
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)  # biased variance, like PyTorch's LayerNorm
    rstd = 1.0 / torch.sqrt(var + eps)
    return (x - mean) * rstd * w + b


def gelu(x):
    # GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def attention(qkv, num_heads):
    # qkv (B,T,3C) -> out (B,T,C): causal multi-head self-attention
    Bq, Tq, C3 = qkv.shape
    C = C3 // 3
    hs = C // num_heads  # head size
    q, k, v = qkv.split(C, dim=2)  # each (B,T,C); head h owns channels h*hs..(h+1)*hs
    q = q.view(Bq, Tq, num_heads, hs).transpose(1, 2)  # (B,NH,T,hs)
    k = k.view(Bq, Tq, num_heads, hs).transpose(1, 2)
    v = v.view(Bq, Tq, num_heads, hs).transpose(1, 2)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hs))  # (B,NH,T,T) scores
    causal = torch.tril(torch.ones(Tq, Tq, dtype=torch.bool))
    att = att.masked_fill(~causal, float("-inf"))  # position t sees positions 0..t only
    att = torch.softmax(att, dim=-1)
    y = att @ v  # (B,NH,T,hs)
    return y.transpose(1, 2).contiguous().view(Bq, Tq, C)  # heads side by side again


def gpt2_forward(cfg, params, x, y=None, ln=layernorm, act=gelu, attn=attention):
    """x, y (B,T) token ids -> logits (B,T,Vp) and, when y is given, the mean cross-entropy loss.

    ln, act and attn are swappable so that the self-check can rerun the model with torch's built-ins.
    """
    p = params
    Bx, Tx = x.shape
    h = p["wte"][x] + p["wpe"][:Tx]  # (B,T,C) token + position embedding
    for l in range(cfg.num_layers):
        a = ln(h, p["ln1w"][l], p["ln1b"][l])
        qkv = F.linear(a, p["qkvw"][l], p["qkvb"][l])  # (B,T,3C)
        h = h + F.linear(attn(qkv, cfg.num_heads), p["attprojw"][l], p["attprojb"][l])
        a = ln(h, p["ln2w"][l], p["ln2b"][l])
        f = act(F.linear(a, p["fcw"][l], p["fcb"][l]))  # (B,T,4C)
        h = h + F.linear(f, p["fcprojw"][l], p["fcprojb"][l])
    h = ln(h, p["lnfw"], p["lnfb"])
    logits = h @ p["wte"].T  # (B,T,Vp): the LM head is the token embedding (tied)
    loss = None
    if y is not None:
        # the padded columns V..Vp are computed but are not part of the softmax
        V = cfg.vocab_size
        loss = F.cross_entropy(logits[..., :V].reshape(-1, V), y.reshape(-1))  # mean over B*T
    return logits, loss


# -----------------------------------------------------------------------------------------------
# AdamW, by hand


def adamw_step(params, grads, m, v, t):
    """One AdamW step (decoupled weight decay, on the 2-D weights only), in place. t counts from 1."""
    with torch.no_grad():
        for name, p in params.items():
            g = grads[name]
            m[name].mul_(BETA1).add_((1.0 - BETA1) * g)  # m = beta1 m + (1 - beta1) g
            v[name].mul_(BETA2).add_((1.0 - BETA2) * g * g)  # v = beta2 v + (1 - beta2) g^2
            mhat = m[name] / (1.0 - BETA1**t)  # bias corrections
            vhat = v[name] / (1.0 - BETA2**t)
            wd = WEIGHT_DECAY if name in DECAYED else 0.0
            p.sub_(LR * (mhat / (torch.sqrt(vhat) + EPS) + wd * p))


def train(cfg, params, x, y, num_steps):
    """num_steps of: zero grads, forward (the loss before the update), backward, AdamW."""
    m = {n: torch.zeros_like(p) for n, p in params.items()}
    v = {n: torch.zeros_like(p) for n, p in params.items()}
    losses = []
    for step in range(num_steps):
        for p in params.values():
            p.grad = None
        _, loss = gpt2_forward(cfg, params, x, y)
        loss.backward()
        adamw_step(params, {n: p.grad for n, p in params.items()}, m, v, step + 1)
        losses.append(loss.item())
    return losses


# -----------------------------------------------------------------------------------------------
# files


def header(*values):
    """256 little-endian int32, the given values first and zeros after."""
    h = np.zeros(256, dtype="<i4")
    h[: len(values)] = values
    return h.tobytes()


def f32(t):
    return t.detach().numpy().astype("<f4").tobytes()


def i32(t):
    return t.numpy().astype("<i4").tobytes()


def flat(cfg, tensors):
    """The 16 tensors (or their gradients) concatenated in llm.c's order, as f32 bytes."""
    return b"".join(f32(tensors[name]) for name, _ in param_shapes(cfg))


def write_model(path, cfg, params):
    with open(path, "wb") as f:
        f.write(
            header(MODEL_MAGIC, MODEL_VERSION_FP32, cfg.max_seq_len, cfg.vocab_size, cfg.num_layers,
                   cfg.num_heads, cfg.channels, cfg.padded_vocab_size)
        )
        f.write(flat(cfg, params))


def write_state(path, x, y, logits, loss, grads, losses, final_params, cfg):
    with open(path, "wb") as f:
        f.write(header(STATE_MAGIC, STATE_VERSION, x.shape[0], x.shape[1], len(losses)))
        f.write(i32(x))
        f.write(i32(y))
        f.write(f32(logits))
        f.write(struct.pack("<f", loss))
        f.write(flat(cfg, grads))
        f.write(struct.pack(f"<{len(losses)}f", *losses))
        f.write(flat(cfg, final_params))


# -----------------------------------------------------------------------------------------------
# self-checks: an independent reader of the two files, torch's built-ins, torch's AdamW


def read_back_and_compare(cfg, params0, x, y, logits, loss, grads, losses, final_params):
    """Parse both files with numpy and offsets computed from the header alone, compare exactly."""
    raw = open(MODEL_FILE, "rb").read()
    hdr = np.frombuffer(raw, dtype="<i4", count=256)
    assert hdr[0] == MODEL_MAGIC and hdr[1] == MODEL_VERSION_FP32, hdr[:2]
    maxT, V, L, NH, C, Vp = (int(v) for v in hdr[2:8])
    assert (maxT, V, L, NH, C, Vp) == (cfg.max_seq_len, cfg.vocab_size, cfg.num_layers,
                                       cfg.num_heads, cfg.channels, cfg.padded_vocab_size)
    assert not hdr[8:].any()
    # the sizes, written out again by hand rather than taken from param_shapes
    sizes = [Vp * C, maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C, L * C * C, L * C,
             L * C, L * C, L * 4 * C * C, L * 4 * C, L * C * 4 * C, L * C, C, C]
    P = sum(sizes)
    assert len(raw) == 1024 + 4 * P, (len(raw), P)
    weights = np.frombuffer(raw, dtype="<f4", offset=1024)
    names = [name for name, _ in param_shapes(cfg)]

    def check_flat(arr, tensors, what):
        off = 0
        for name, n in zip(names, sizes):
            want = tensors[name].detach().numpy().reshape(-1)
            assert np.array_equal(arr[off:off + n], want), f"{what}: {name} differs"
            off += n
        assert off == len(arr)

    check_flat(weights, params0, "model file")

    raw = open(STATE_FILE, "rb").read()
    hdr = np.frombuffer(raw, dtype="<i4", count=256)
    assert hdr[0] == STATE_MAGIC and hdr[1] == STATE_VERSION, hdr[:2]
    b, t, nsteps = (int(v) for v in hdr[2:5])
    assert not hdr[5:].any()
    off = 1024
    rx = np.frombuffer(raw, dtype="<i4", count=b * t, offset=off); off += 4 * b * t
    ry = np.frombuffer(raw, dtype="<i4", count=b * t, offset=off); off += 4 * b * t
    rlogits = np.frombuffer(raw, dtype="<f4", count=b * t * Vp, offset=off); off += 4 * b * t * Vp
    rloss = np.frombuffer(raw, dtype="<f4", count=1, offset=off)[0]; off += 4
    rgrads = np.frombuffer(raw, dtype="<f4", count=P, offset=off); off += 4 * P
    rlosses = np.frombuffer(raw, dtype="<f4", count=nsteps, offset=off); off += 4 * nsteps
    rfinal = np.frombuffer(raw, dtype="<f4", count=P, offset=off); off += 4 * P
    assert off == len(raw), (off, len(raw))
    assert np.array_equal(rx, x.numpy().reshape(-1)) and np.array_equal(ry, y.numpy().reshape(-1))
    assert rx.min() >= 0 and rx.max() < V and ry.min() >= 0 and ry.max() < V
    assert np.array_equal(rlogits, logits.detach().numpy().reshape(-1))
    assert rloss == np.float32(loss)
    check_flat(rgrads, grads, "gradients")
    assert np.array_equal(rlosses, np.array(losses, dtype=np.float32))
    check_flat(rfinal, final_params, "final parameters")
    assert rlosses[0] == rloss, "the first training loss is the loss of the initial parameters"
    # the padded rows of wte: no gradient, since the loss skips columns V..Vp and ids are < V
    assert not rgrads[V * C:Vp * C].any()
    return P


def check_against_torch_builtins(cfg, params, x, y, logits, loss):
    """The hand-written LayerNorm, GELU and attention against F.layer_norm, F.gelu, SDPA."""

    def ln(h, w, b):
        return F.layer_norm(h, (cfg.channels,), w, b, eps=1e-5)

    def act(h):
        return F.gelu(h, approximate="tanh")

    def attn(qkv, nh):
        Bq, Tq, C3 = qkv.shape
        C = C3 // 3
        q, k, v = (z.view(Bq, Tq, nh, C // nh).transpose(1, 2) for z in qkv.split(C, dim=2))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return out.transpose(1, 2).contiguous().view(Bq, Tq, C)

    with torch.no_grad():
        logits2, loss2 = gpt2_forward(cfg, params, x, y, ln=ln, act=act, attn=attn)
    dl = (logits2 - logits).abs().max().item()
    # float32 rounding through 2 layers: a few ulps of numbers of size ~1
    assert dl < 1e-5 and abs(loss2.item() - loss) < 1e-5, (dl, loss2.item(), loss)
    return dl


def check_against_torch_adamw(cfg, params0, x, y, losses, final_params):
    """Rerun the training with torch.optim.AdamW; it rounds differently, so compare with a tolerance."""
    params = {n: p.detach().clone().requires_grad_(True) for n, p in params0.items()}
    opt = torch.optim.AdamW(
        [
            {"params": [p for n, p in params.items() if n in DECAYED], "weight_decay": WEIGHT_DECAY},
            {"params": [p for n, p in params.items() if n not in DECAYED], "weight_decay": 0.0},
        ],
        lr=LR, betas=(BETA1, BETA2), eps=EPS, foreach=False, fused=False,
    )
    losses2 = []
    for _ in range(len(losses)):
        opt.zero_grad(set_to_none=True)
        _, loss = gpt2_forward(cfg, params, x, y)
        loss.backward()
        opt.step()
        losses2.append(loss.item())
    dp = max((params[n] - final_params[n]).abs().max().item() for n in params)
    dl = max(abs(a - b) for a, b in zip(losses, losses2))
    # Adam divides by sqrt(v): where a gradient is tiny, its float rounding noise becomes a sizeable
    # step. The key bias (qkvb rows C..2C) has a gradient that is exactly 0 in exact arithmetic (adding
    # q.b to every score of a query does not change the softmax), so in float32 it is pure rounding
    # noise (~1e-11, below eps = 1e-8): the two roundings end up ~2e-6 apart there after 10 steps, and
    # < 1e-7 on every parameter with a real gradient.
    assert dp < 1e-5 and dl < 1e-5, (dp, dl)
    return dp, dl


def float64_gaps(cfg, params0, x, y, logits, loss, grads, losses, final_params):
    """How far the float32 results are from the same computation in float64.

    Not a pass/fail check: it tells the Rust parity tests how much float32 rounding alone moves each
    result, which is the scale their tolerances must allow for.
    """
    p64 = {n: p.detach().double().requires_grad_(True) for n, p in params0.items()}
    logits64, loss64 = gpt2_forward(cfg, p64, x, y)
    loss64.backward()
    gaps = {
        "logits": (logits64.detach() - logits.double()).abs().max().item(),
        "loss": abs(loss64.item() - loss),
        "grads": max((p64[n].grad - grads[n].double()).abs().max().item() for n in p64),
    }
    p64 = {n: p.detach().double().requires_grad_(True) for n, p in params0.items()}
    losses64 = train(cfg, p64, x, y, len(losses))
    gaps["losses"] = max(abs(a - b) for a, b in zip(losses64, losses))
    gaps["final params"] = max((p64[n] - final_params[n].double()).abs().max().item() for n in p64)
    return gaps


# -----------------------------------------------------------------------------------------------


def main():
    cfg = Config()
    params = init_params(cfg)
    params0 = {n: p.detach().clone() for n, p in params.items()}  # what goes into the model file

    # a fixed batch: a random sequence of T+1 ids per row, y is x shifted by one
    gen = torch.Generator().manual_seed(42)
    tokens = torch.randint(0, cfg.vocab_size, (B, T + 1), generator=gen, dtype=torch.int64)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()

    # the first forward/backward: logits, loss and gradients of the initial parameters
    logits, loss = gpt2_forward(cfg, params, x, y)
    loss.backward()
    logits = logits.detach().clone()
    loss = loss.item()
    grads = {n: p.grad.detach().clone() for n, p in params.items()}

    # 10 steps of AdamW from the same initial parameters
    losses = train(cfg, params, x, y, NUM_STEPS)
    final_params = {n: p.detach().clone() for n, p in params.items()}

    os.makedirs(FIXTURE_DIR, exist_ok=True)
    write_model(MODEL_FILE, cfg, params0)
    write_state(STATE_FILE, x, y, logits, loss, grads, losses, final_params, cfg)

    P = read_back_and_compare(cfg, params0, x, y, logits, loss, grads, losses, final_params)
    d_builtin = check_against_torch_builtins(cfg, params0, x, y, logits, loss)
    dp_adamw, dl_adamw = check_against_torch_adamw(cfg, params0, x, y, losses, final_params)
    gaps = float64_gaps(cfg, params0, x, y, logits, loss, grads, losses, final_params)

    print(f"torch {torch.__version__}")
    print(f"config: maxT={cfg.max_seq_len} V={cfg.vocab_size} Vp={cfg.padded_vocab_size} "
          f"L={cfg.num_layers} NH={cfg.num_heads} C={cfg.channels}; batch B={B} T={T}")
    print(f"parameters: {P}")
    print(f"loss: {loss:.6f}")
    print("losses: " + " ".join(f"{l:.6f}" for l in losses))
    print(f"wrote {os.path.relpath(MODEL_FILE)} ({os.path.getsize(MODEL_FILE)} bytes)")
    print(f"wrote {os.path.relpath(STATE_FILE)} ({os.path.getsize(STATE_FILE)} bytes)")
    print("self-checks passed: files read back equal; "
          f"built-in layers max |dlogits| {d_builtin:.2e}; "
          f"torch.optim.AdamW max |dparam| {dp_adamw:.2e}, max |dloss| {dl_adamw:.2e}")
    print("float32 vs float64, max abs difference: "
          + ", ".join(f"{k} {v:.2e}" for k, v in gaps.items()))


if __name__ == "__main__":
    main()
