#!/usr/bin/env python3
"""Speculative decoding of a Hugging Face causal LM with redraft, against HF's own decoders.

    python examples/python/hf_speculative.py --model data/models/kjv-target \
        --draft data/draft_heads/kjv --prompt "And God said unto Moses, " --max-new-tokens 200

Runs, on the same prompt and in the same process:
  1. HF plain greedy decoding:  model.generate(do_sample=False)
  2. HF prompt lookup decoding: model.generate(do_sample=False, prompt_lookup_num_tokens=10)
  3. redraft + HF: redraft.SpeculativeDecoder over redraft.hf.HFTarget(model) with the draft head,
     one fixed shape W x L every step
  4. redraft + HF, adaptive: the same with redraft.AdaptivePolicy, which picks each step's shape
     (or a plain step) from the candidates --widths x --lengths by measured costs and acceptance;
     one policy serves the warm-up and every timed run, as it would serve a server's calls
and prints tokens/s of each, the speedups over (1), redraft's tokens per step (per target
forward pass), the shapes the policy picked, and whether redraft's tokens are identical to (1).
Each timing is the median of --repeat rounds after one warm-up round; a round runs every method
once, in an order that rotates, so a machine that slows down for a while slows all of them.
"""

import argparse
import statistics
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="HF model directory (a *ForCausalLM)")
    p.add_argument("--draft", required=True, help="redraft draft-head checkpoint directory")
    p.add_argument("--prompt", required=True, help="prompt text")
    p.add_argument("--max-new-tokens", type=int, default=200)
    # NOTE: one long beam is the best shape for the shipped KJV pair on a CPU, where the tiny
    # target's forward pass costs in proportion to the tree's nodes (docs/python.md).
    p.add_argument("--beam-width", type=int, default=1, help="W (default 1)")
    p.add_argument("--beam-length", type=int, default=10, help="L, root included (default 10)")
    p.add_argument("--widths", default="1,2", help="the adaptive policy's candidate W (default 1,2)")
    p.add_argument("--lengths", default="2,4,6,8,10,12,16",
                   help="the adaptive policy's candidate L (default 2,4,6,8,10,12,16)")
    p.add_argument("--lookup-tokens", type=int, default=10, help="prompt_lookup_num_tokens (default 10)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per method; the median is shown")
    return p.parse_args()


def encode(model_dir, vocab_size, text):
    """The model's tokenizer when the directory has one, else bytes (a byte-level vocabulary)."""
    import os

    if any(os.path.exists(os.path.join(model_dir, f)) for f in ("tokenizer.json", "tokenizer_config.json")):
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(model_dir)(text)["input_ids"]
    if vocab_size < 256:
        sys.exit(f"{model_dir} has no tokenizer and a vocabulary of {vocab_size} < 256 bytes")
    return list(text.encode())


def timed(fns, repeat):
    """Runs every function once (warm-up), then `repeat` rounds of all of them, rotating which
    runs first. Returns each one's outputs (warm-up first) and median time."""
    outs = [[fn()] for fn in fns]
    times = [[] for _ in fns]
    for r in range(repeat):
        for k in range(len(fns)):
            i = (r + k) % len(fns)
            start = time.perf_counter()
            outs[i].append(fns[i]())
            times[i].append(time.perf_counter() - start)
    return outs, [statistics.median(t) for t in times]


def shape_shares(result):
    """The steps' shapes as 'W x L share' strings, most used first ('plain' for a plain step)."""
    counts = {}
    for s in result.steps:
        key = "plain" if s.beam_length == 1 else f"{s.beam_width}x{s.beam_length}"
        counts[key] = counts.get(key, 0) + 1
    total = sum(counts.values())
    return ", ".join(f"{k} {100 * c / total:.0f}%" for k, c in sorted(counts.items(), key=lambda kv: -kv[1]))


def main():
    args = parse_args()
    import os

    # OpenBLAS (Debian's torch BLAS) ignores torch.set_num_threads; it reads this before loading.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(args.threads))
    import torch
    from transformers import AutoModelForCausalLM

    import redraft
    from redraft.hf import HFTarget, hf_greedy_generate, hf_prompt_lookup_generate

    torch.set_num_threads(args.threads)
    model = AutoModelForCausalLM.from_pretrained(args.model, torch_dtype=torch.float32).eval()
    head = redraft.DraftHead.load(args.draft)
    prompt = encode(args.model, model.config.vocab_size, args.prompt)
    n = args.max_new_tokens

    target = HFTarget(model)
    decoder = redraft.SpeculativeDecoder(
        target, head, redraft.DecodeOptions(beam_width=args.beam_width, beam_length=args.beam_length)
    )
    policy = redraft.AdaptivePolicy(widths=[int(w) for w in args.widths.split(",")],
                                    lengths=[int(x) for x in args.lengths.split(",")])
    adaptive = redraft.SpeculativeDecoder(target, head, policy=policy)
    (plains, lookups, results, adaptive_results), (plain_s, lookup_s, redraft_s, adaptive_s) = timed(
        [lambda: hf_greedy_generate(model, prompt, n),
         lambda: hf_prompt_lookup_generate(model, prompt, n, args.lookup_tokens),
         lambda: decoder.generate([prompt], max_new_tokens=n),
         lambda: adaptive.generate([prompt], max_new_tokens=n)], args.repeat)
    plain, lookup = plains[-1], lookups[-1]
    result, adaptive_result = results[-1], adaptive_results[-1]
    tokens, adaptive_tokens = result.tokens[0], adaptive_result.tokens[0]

    def rate(count, seconds):
        return count / seconds

    print(f"prompt: {len(prompt)} tokens, {n} new tokens, torch threads {args.threads}, "
          f"fixed W={args.beam_width} L={args.beam_length}, adaptive over W in {{{args.widths}}} x "
          f"L in {{{args.lengths}}}, median of {args.repeat} rounds, CPU kernels {redraft._simd_isa}")
    print(f"HF plain greedy:        {rate(len(plain), plain_s):8.1f} tokens/s")
    print(f"HF prompt lookup:       {rate(len(lookup), lookup_s):8.1f} tokens/s   "
          f"speedup {plain_s / lookup_s * len(lookup) / len(plain):.2f}x   "
          f"identical: {'yes' if lookup == plain else 'NO'}")
    print(f"redraft + HF:           {rate(len(tokens), redraft_s):8.1f} tokens/s   "
          f"speedup {plain_s / redraft_s * len(tokens) / len(plain):.2f}x   "
          f"tokens/step {result.tokens_per_step:.2f}")
    print(f"redraft + HF, adaptive: {rate(len(adaptive_tokens), adaptive_s):8.1f} tokens/s   "
          f"speedup {plain_s / adaptive_s * len(adaptive_tokens) / len(plain):.2f}x   "
          f"tokens/step {adaptive_result.tokens_per_step:.2f}   "
          f"(last run: {shape_shares(adaptive_result)})")
    # Every run of both redraft decoders (the adaptive policy's shapes differ from run to run).
    identical = all(r.tokens[0] == plain for r in results + adaptive_results)
    print(f"identical to HF generate (every run): {'yes' if identical else 'NO'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
