#!/usr/bin/env python3
"""train_target.py: train the demo's byte-level Llama target on the King James Bible.

OFFLINE tool. The library, its tests and its programs never need Python; this script only
produced the checkpoint shipped in data/models/kjv-target/ (see docs/results.md).

The model is exactly the forward pass of include/redraft/testing/tiny_llama.hpp (Hugging Face's
LlamaForCausalLM with multi-head attention, float32):
    x = embed_tokens[token]
    per layer:  a = RMSNorm(x); q, k, v = a Wq^T, a Wk^T, a Wv^T
                q, k rotated by RoPE (HF rotate_half: halves [0, d/2) and [d/2, d) of each head,
                inv_freq_j = theta^(-2j/d), angle = position * inv_freq_j)
                x += softmax(q k^T / sqrt(head_dim) + causal mask) v Wo^T
                m = RMSNorm(x); x += (SiLU(m Wgate^T) * (m Wup^T)) Wdown^T
    hidden = RMSNorm(x); logits = hidden lm_head^T
RMSNorm(x) = x / sqrt(mean(x^2) + eps) * weight, eps = 1e-5. No biases, no dropout.

Data: the text of the King James Version from Debian's bible-kjv-text package (public domain:
the translation dates from 1611), dumped with its `bible` program, one verse per line with the
verse numbers removed; bytes are tokens (V = 256). The last 2% of the verses are held out.

Output (--out): config.json (LlamaConfig fields that redraft::testing::load_tiny_llama reads),
model.safetensors (HF tensor names, F16), training_log.json, and reference_logits.json (the
logits this script computes, in float32 from the F16-rounded weights, for a fixed prompt: the
C++ test tests/test_shipped_models.cpp checks tiny_llama reproduces them).

Reproducible: fixed seeds (torch, batch sampling), deterministic data order, single process.
Usage: python3 tools/train_target.py --out data/models/kjv-target [--minutes 25] [--threads 2]
"""

import argparse
import json
import math
import os
import re
import struct
import subprocess
import sys
import time

import torch  # noqa: E402 (imported after the BLAS choice below takes effect on re-exec)
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# Data

def kjv_text(path=None):
    """The KJV as one verse per line (bytes). From a file when given, else from `bible`."""
    if path:
        with open(path, "rb") as f:
            return f.read()
    raw = subprocess.run(["bible", "-l", "100000", "gen1:1-rev22:21"], check=True,
                         capture_output=True).stdout.decode("utf-8")
    verses, current = [], None
    for line in raw.splitlines():
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:  # a new verse "  12 text"
            if current is not None:
                verses.append(current)
            current = m.group(2).strip()
        elif line.strip() == "" or re.match(r"^\S.* \d+$", line):  # blank or "Genesis 1" heading
            if current is not None:
                verses.append(current)
                current = None
        elif current is not None:  # continuation of a wrapped verse
            current += " " + line.strip()
    if current is not None:
        verses.append(current)
    return ("\n".join(verses) + "\n").encode("utf-8")


# ----------------------------------------------------------------------------------------------
# Model (tiny_llama.hpp's forward pass)

class Config:
    def __init__(self, vocab_size=256, hidden_size=256, num_layers=4, num_heads=4,
                 intermediate_size=768, max_context=512, rope_theta=10000.0, rms_norm_eps=1e-5,
                 tie_word_embeddings=False):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.head_dim = hidden_size // num_heads
        self.intermediate_size = intermediate_size
        self.max_context = max_context
        self.rope_theta = rope_theta
        self.rms_norm_eps = rms_norm_eps
        self.tie_word_embeddings = tie_word_embeddings

    def to_json(self):
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float16",
            "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "rope_scaling": None,
            "vocab_size": self.vocab_size, "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers, "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_heads, "head_dim": self.head_dim,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_context, "rope_theta": self.rope_theta,
            "rms_norm_eps": self.rms_norm_eps, "tie_word_embeddings": self.tie_word_embeddings,
        }


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rope_tables(cfg, length):
    # NOTE: angles in float64 rounded once, as tiny_llama's table (exact to float precision).
    half = cfg.head_dim // 2
    inv_freq = cfg.rope_theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / cfg.head_dim)
    angle = torch.arange(length, dtype=torch.float64)[:, None] * inv_freq[None, :]  # [T, d/2]
    return torch.cos(angle).float(), torch.sin(angle).float()


def apply_rope(v, cos, sin):
    # v [B, heads, T, d]; rotate_half: v'[j] = v[j] c - v[j+d/2] s ; v'[j+d/2] = v[j+d/2] c + v[j] s
    half = v.shape[-1] // 2
    a, b = v[..., :half], v[..., half:]
    return torch.cat([a * cos - b * sin, b * cos + a * sin], dim=-1)


class Llama(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        h, d, i = cfg.hidden_size, cfg.num_heads * cfg.head_dim, cfg.intermediate_size
        P = torch.nn.Parameter
        self.embed_tokens = P(torch.randn(cfg.vocab_size, h) * 0.02)
        self.layers = torch.nn.ModuleList()
        for _ in range(cfg.num_layers):
            layer = torch.nn.Module()
            layer.input_layernorm = P(torch.ones(h))
            layer.q_proj = P(torch.randn(d, h) / math.sqrt(h))
            layer.k_proj = P(torch.randn(d, h) / math.sqrt(h))
            layer.v_proj = P(torch.randn(d, h) / math.sqrt(h))
            layer.o_proj = P(torch.randn(h, d) / math.sqrt(d) / math.sqrt(2 * cfg.num_layers))
            layer.post_attention_layernorm = P(torch.ones(h))
            layer.gate_proj = P(torch.randn(i, h) / math.sqrt(h))
            layer.up_proj = P(torch.randn(i, h) / math.sqrt(h))
            layer.down_proj = P(torch.randn(h, i) / math.sqrt(i) / math.sqrt(2 * cfg.num_layers))
            self.layers.append(layer)
        self.norm = P(torch.ones(h))
        self.lm_head = None if cfg.tie_word_embeddings else P(torch.randn(cfg.vocab_size, h) * 0.02)

    def forward(self, tokens):  # tokens [B, T] -> logits [B, T, V]
        cfg = self.cfg
        B, T = tokens.shape
        nh, hd = cfg.num_heads, cfg.head_dim
        cos, sin = rope_tables(cfg, T)
        x = self.embed_tokens[tokens]
        for layer in self.layers:
            a = rms_norm(x, layer.input_layernorm, cfg.rms_norm_eps)
            q = (a @ layer.q_proj.t()).view(B, T, nh, hd).transpose(1, 2)
            k = (a @ layer.k_proj.t()).view(B, T, nh, hd).transpose(1, 2)
            v = (a @ layer.v_proj.t()).view(B, T, nh, hd).transpose(1, 2)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
            scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(hd))
            causal = torch.ones(T, T, dtype=torch.bool).tril()
            scores = scores.masked_fill(~causal, float("-inf"))
            o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, nh * hd)
            x = x + o @ layer.o_proj.t()
            m = rms_norm(x, layer.post_attention_layernorm, cfg.rms_norm_eps)
            x = x + (F.silu(m @ layer.gate_proj.t()) * (m @ layer.up_proj.t())) @ layer.down_proj.t()
        hidden = rms_norm(x, self.norm, cfg.rms_norm_eps)
        head = self.embed_tokens if self.lm_head is None else self.lm_head
        return hidden @ head.t()

    def hf_tensors(self):
        """{HF name: tensor} in LlamaForCausalLM's names and [out, in] shapes."""
        out = {"model.embed_tokens.weight": self.embed_tokens}
        for n, layer in enumerate(self.layers):
            p = f"model.layers.{n}."
            out[p + "input_layernorm.weight"] = layer.input_layernorm
            out[p + "self_attn.q_proj.weight"] = layer.q_proj
            out[p + "self_attn.k_proj.weight"] = layer.k_proj
            out[p + "self_attn.v_proj.weight"] = layer.v_proj
            out[p + "self_attn.o_proj.weight"] = layer.o_proj
            out[p + "post_attention_layernorm.weight"] = layer.post_attention_layernorm
            out[p + "mlp.gate_proj.weight"] = layer.gate_proj
            out[p + "mlp.up_proj.weight"] = layer.up_proj
            out[p + "mlp.down_proj.weight"] = layer.down_proj
        out["model.norm.weight"] = self.norm
        if self.lm_head is not None:
            out["lm_head.weight"] = self.lm_head
        return out


# ----------------------------------------------------------------------------------------------
# safetensors, written by hand (8-byte little-endian header length, JSON header, raw data)

def write_safetensors_f16(path, tensors):
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name in sorted(tensors):
        data = tensors[name].detach().to(torch.float16).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F16", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)  # align the data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# ----------------------------------------------------------------------------------------------

OPENBLAS_DIR = "/usr/lib/x86_64-linux-gnu/openblas-pthread"


def main():
    # NOTE: Debian's python3-torch calls the reference BLAS through libblas.so.3 (~3 GFLOP/s
    # here); OpenBLAS (package libopenblas0-pthread) is ~10x faster. Rather than switch the
    # system-wide alternative, the script re-runs itself with OpenBLAS first on the library path.
    if os.path.isdir(OPENBLAS_DIR) and OPENBLAS_DIR not in os.environ.get("LD_LIBRARY_PATH", ""):
        env = dict(os.environ, LD_LIBRARY_PATH=OPENBLAS_DIR + ":" + os.environ.get("LD_LIBRARY_PATH", ""))
        os.execve(sys.executable, [sys.executable] + sys.argv, env)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--text", help="training text (default: the KJV from `bible`)")
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--intermediate", type=int, default=768)
    ap.add_argument("--context", type=int, default=256, help="training sequence length")
    ap.add_argument("--max-context", type=int, default=512, help="max_position_embeddings")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--steps", type=int, default=100000, help="upper bound; --minutes usually stops first")
    ap.add_argument("--minutes", type=float, default=25.0, help="training wall-time budget")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--measure", action="store_true", help="time 5 steps and exit")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    text = kjv_text(args.text)
    data = torch.tensor(list(text), dtype=torch.long)
    n_val = len(data) // 50
    train, val = data[:-n_val], data[-n_val:]
    print(f"text: {len(data)} bytes ({len(train)} train, {len(val)} held out)", flush=True)

    cfg = Config(hidden_size=args.hidden, num_layers=args.layers, num_heads=args.heads,
                 intermediate_size=args.intermediate, max_context=args.max_context)
    model = Llama(cfg)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params / 1e6:.2f}M parameters, {json.dumps(cfg.to_json())}", flush=True)

    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(args.seed)
    T = args.context

    def batch(source, n, g):
        start = torch.randint(0, len(source) - T - 1, (n,), generator=g)
        x = torch.stack([source[s:s + T] for s in start.tolist()])
        y = torch.stack([source[s + 1:s + T + 1] for s in start.tolist()])
        return x, y

    def evaluate():
        model.eval()
        g = torch.Generator().manual_seed(99)
        with torch.no_grad():
            losses = []
            for _ in range(8):
                x, y = batch(val, 16, g)
                losses.append(F.cross_entropy(model(x).flatten(0, 1), y.flatten()).item())
        model.train()
        return sum(losses) / len(losses)

    if args.measure:
        for s in range(6):
            if s == 1:
                t0 = time.time()
            x, y = batch(train, args.batch, gen)
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
        dt = (time.time() - t0) / 5
        print(f"{dt:.3f} s/step, {args.batch * T / dt:.0f} tokens/s", flush=True)
        return

    # NOTE: the schedule is set by a step count estimated from the first steps' speed, so a run
    # is reproducible given the same --steps; the estimate is printed and recorded in the log.
    budget = args.minutes * 60.0
    warmup = 100
    t_start = time.time()
    log = {"args": vars(args), "params": n_params, "text_bytes": len(data), "evals": []}
    total_steps = args.steps
    step = 0
    while step < total_steps:
        if step == 20 and args.steps == 100000:
            per_step = (time.time() - t_start) / 20
            total_steps = max(200, int(budget / per_step * 0.97))
            print(f"{per_step:.3f} s/step: schedule set to {total_steps} steps", flush=True)
            log["total_steps"] = total_steps
        lr = args.lr * min(1.0, (step + 1) / warmup)
        if step >= warmup and total_steps > warmup:
            lr = args.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / (total_steps - warmup))))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = batch(train, args.batch, gen)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 100 == 0 or step == total_steps:
            ev = evaluate() if (step % 500 == 0 or step == total_steps) else None
            elapsed = time.time() - t_start
            print(f"step {step}/{total_steps} loss {loss.item():.3f}"
                  + (f" held-out {ev:.3f} nats/byte" if ev is not None else "")
                  + f" lr {lr:.2e} {elapsed:.0f}s", flush=True)
            if ev is not None:
                log["evals"].append({"step": step, "train_loss": loss.item(), "held_out": ev, "s": elapsed})
    log["train_s"] = time.time() - t_start
    log["steps"] = step

    # Round to F16 (what is shipped), and compute the reference logits from the rounded weights.
    os.makedirs(args.out, exist_ok=True)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.float16).float())
    log["held_out_f16"] = evaluate()
    print(f"held-out loss with F16 weights: {log['held_out_f16']:.3f} nats/byte", flush=True)
    write_safetensors_f16(os.path.join(args.out, "model.safetensors"), model.hf_tensors())
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg.to_json(), f, indent=2)
        f.write("\n")
    prompt = "In the beginning God created the heaven and the earth. And the earth was"
    with torch.no_grad():
        logits = model(torch.tensor([list(prompt.encode())]))[0]  # [T, V]
    rows = [0, len(prompt) // 2, len(prompt) - 1]
    with open(os.path.join(args.out, "reference_logits.json"), "w") as f:
        json.dump({"prompt": prompt, "rows": rows,
                   "logits": [[round(v, 6) for v in logits[r].tolist()] for r in rows]}, f)
        f.write("\n")
    # A greedy sample, for the log.
    tokens = list("And God said".encode())
    with torch.no_grad():
        for _ in range(120):
            tokens.append(int(model(torch.tensor([tokens]))[0, -1].argmax()))
    log["greedy_sample"] = bytes(tokens).decode("utf-8", "replace")
    print("greedy sample:", log["greedy_sample"], flush=True)
    with open(os.path.join(args.out, "training_log.json"), "w") as f:
        json.dump(log, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
