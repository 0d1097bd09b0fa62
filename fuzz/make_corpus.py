#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (fuzz/corpus/<target>/): small, hand-made
inputs that reach the deep paths of each target (see each fuzz/fuzz_<target>.hpp for the
input layout). Deterministic; rerun after changing a layout. Usage: python3 fuzz/make_corpus.py"""
import json
import os
import shutil
import struct

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(here)


def write(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, dtype="F32"):
    header, blobs, offset = {}, b"", 0
    fmt, size = {"F32": ("<f", 4), "F16": ("<e", 2)}[dtype]
    for name in sorted(tensors):
        shape, values = tensors[name]
        blob = b"".join(struct.pack(fmt, v) for v in values)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(blob)]}
        blobs += blob
        offset += len(blob)
    header["__metadata__"] = {"format": "pt"}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blobs


def head_tensors(V, H, E, N, rnn=True):
    t = {}
    if E != 2 * H:
        t["input_proj.weight"] = ([E, 2 * H], [0.01 * i for i in range(E * 2 * H)])
        t["input_proj.bias"] = ([E], [0.0] * E)
    for i in range(N):
        t[f"lm_head.{i}.linear.weight"] = ([E, E], [0.02 * j for j in range(E * E)])
        t[f"lm_head.{i}.linear.bias"] = ([E], [0.1] * E)
    t[f"lm_head.{N}.weight"] = ([V, E], [0.03 * j for j in range(V * E)])
    if rnn:
        t["rnn_u.weight"] = ([H, H], [0.5] * (H * H))
        t["rnn_u.bias"] = ([H], [0.0] * H)
        t["rnn_w.weight"] = ([H, H], [0.25] * (H * H))
    return t


def checkpoint(config, tensors, dtype="F32"):
    c = json.dumps(config).encode()
    return struct.pack("<H", len(c)) + c + safetensors(tensors, dtype)


# checkpoint: valid heads of each variant, and a few near misses.
write("checkpoint", "silu", checkpoint({"vocab_size": 4, "hidden_size": 2, "exit_dim": 4, "num_draft_layers": 1},
                                       head_tensors(4, 2, 4, 1)))
write("checkpoint", "input_proj_f16", checkpoint({"vocab_size": 3, "hidden_size": 2, "exit_dim": 3,
                                                  "num_draft_layers": 0, "recurrence": "linear"},
                                                 head_tensors(3, 2, 3, 0), "F16"))
write("checkpoint", "running_sum", checkpoint({"vocab_size": 2, "hidden_size": 1, "exit_dim": 2,
                                               "num_draft_layers": 2, "rnn": False, "logit_top_k": 1},
                                              head_tensors(2, 1, 2, 2, rnn=False)))
write("checkpoint", "huge_config", checkpoint({"vocab_size": 1e300, "hidden_size": 4611686018427387904,
                                               "exit_dim": 1, "num_draft_layers": 1000000000000},
                                              {"x": ([1], [1.0])}))
write("checkpoint", "wrong_shape", checkpoint({"vocab_size": 4, "hidden_size": 2, "exit_dim": 4, "num_draft_layers": 1},
                                              head_tensors(5, 2, 4, 1)))

# tree: mode byte 0 beams, 1 choices, 2 parents; then the mode's bytes, then mask bytes.
write("tree", "beams", bytes([0, 2, 4, 4, 1, 7] + [i % 3 for i in range(80)] + [0, 3] + [1] * 12 + [5, 250]))
write("tree", "beams_wide", bytes([0, 1, 8, 8, 1, 2] + [(i * 7) % 4 for i in range(70)] + [0, 0, 198, 199]))
write("tree", "choices", bytes([1, 6, 1, 0, 1, 1, 2, 0, 0, 2, 0, 1, 3, 0, 0, 0, 1, 2, 3, 3, 1, 2, 3] + list(range(40))))
write("tree", "parents", bytes([2, 3, 0, 5, 0, 1, 0, 1, 2, 0, 3, 1, 4, 2, 3, 0, 2, 1, 0, 2, 2, 1, 1, 0, 0, 1, 2, 3, 4, 5, 6, 7]))

# verify: [from_beams flag][V choice][V][tree ...][logits ...][uniforms ...][params ...]
write("verify", "beams", bytes([1, 1, 4, 2, 3, 4] + [i % 4 for i in range(60)] + [128 + i % 40 for i in range(200)]))
write("verify", "parents", bytes([0, 1, 6, 2, 6, 0, 1, 0, 2, 1, 3, 2, 0, 5, 1] + [100 + (i * 13) % 100 for i in range(160)]))
write("verify", "hostile", bytes([0, 1, 3, 1, 4, 0, 0, 1, 1, 2, 0, 255, 16, 14, 0, 1, 255, 20, 0, 2] + [200, 15, 9, 8] * 20))

# kv: [slots][layers][kv][heads][max_len][head_dim][from_acceptance][...]
write("kv", "plan", bytes([3, 2, 0, 1, 20, 2, 0, 3, 0, 4, 4, 1, 2, 1, 1, 0, 2, 3, 2, 0, 5, 0, 0]))
write("kv", "acceptance", bytes([2, 1, 0, 2, 16, 1, 1, 2, 4, 2, 0, 1, 0, 2, 0, 1, 3, 0, 0, 1, 0, 5, 1, 0, 0, 2, 0, 1]))

# golden: the smallest shipped cases as they are.
for name in ["pack_0.json", "pack_3.json", "pack_1.json", "greedy_0.json"]:
    shutil.copy(os.path.join(root, "tests", "data", "golden", name), os.path.join(here, "corpus", "golden", name))
