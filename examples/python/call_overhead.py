#!/usr/bin/env python3
"""The cost of one minimal call from Python into redraft: greedy verification of a one-node tree
(logits [1, V]), with the logits as a NumPy array and as a PyTorch tensor (read through
DLPack). Each figure is the best of 7 repeats of N calls, in microseconds per call; an empty
Python call and the bare argument import (_data_address) are shown for scale.

    python examples/python/call_overhead.py [--vocab 256] [--calls 20000]
"""

import argparse
import timeit

import numpy as np

import redraft
from redraft import _redraft


def per_call_us(fn, calls):
    return min(timeit.repeat(fn, number=calls, repeat=7)) / calls * 1e6


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vocab", type=int, default=256)
    p.add_argument("--calls", type=int, default=20000)
    args = p.parse_args()
    tree = redraft.build_tree_from_parents(
        np.array([0, 1], dtype=np.int32), np.array([-1], dtype=np.int32), np.array([3], dtype=np.int32)
    )
    logits = np.zeros((1, args.vocab), dtype=np.float32)
    logits[0, 7] = 1.0
    rows = [
        ("empty Python call (lambda: None)", lambda: None, logits),
        ("_data_address(numpy [1, V])", lambda: _redraft._data_address(logits), logits),
        ("verify_greedy(1-node tree, numpy [1, V])", lambda: redraft.verify_greedy(tree, logits), logits),
    ]
    try:
        import torch

        tensor = torch.from_numpy(logits.copy())
        rows += [
            ("_data_address(torch [1, V])", lambda: _redraft._data_address(tensor), tensor),
            ("verify_greedy(1-node tree, torch [1, V])", lambda: redraft.verify_greedy(tree, tensor), tensor),
        ]
    except ImportError:
        pass
    assert redraft.verify_greedy(tree, logits).next_token[0] == 7
    print(f"V = {args.vocab}, best of 7 x {args.calls} calls")
    for name, fn, _ in rows:
        print(f"{name:45s} {per_call_us(fn, args.calls):6.2f} us")


if __name__ == "__main__":
    main()
