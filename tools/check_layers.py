#!/usr/bin/env python3
"""Fails when a header under include/redraft/ includes a folder its layer may not depend on.

The rules (docs/architecture.md) as a table: folder -> folders it may include besides itself.
Arrows point down only: algorithms depend on the vocabulary (core/), backends depend on core/
only, and nothing below the loop knows about the loop.

  check_layers.py [INCLUDE_DIR]      (default: include/ beside this script's parent)
"""
import pathlib
import re
import sys

ALLOWED = {
    "core": set(),
    "cpu": {"core"},
    "cuda": {"core"},
    "draft": {"core"},
    "tree": {"core"},
    "verify": {"core"},
    "kv": {"core", "verify"},
    "loop": {"core", "draft", "tree", "verify", "kv"},
    "train": {"core", "cpu", "draft", "tree", "verify", "kv", "loop"},
    "testing": {"core", "cpu", "draft", "tree", "verify", "kv", "loop", "train"},
}
# Known debt, each with the reason it is still there; remove an entry when its include goes.
# The check fails on any other crossing, and on an entry here that no longer occurs.
KNOWN = {
    ("cuda/block/greedy_walk.cuh", "verify"): "fused greedy walk reuses verify/greedy.hpp's step",
    ("cuda/block/tree_mask.cuh", "tree"): "fused mask kernel reuses tree/masks.hpp's row functor",
    ("cuda/block/sampling_walk.cuh", "verify"): "block sampling verifiers run verify/'s step states",
}
INCLUDE = re.compile(r'^\s*#\s*include\s+"redraft/([a-z_]+)/')


def main(argv):
    root = pathlib.Path(argv[0]) if argv else pathlib.Path(__file__).resolve().parent.parent / "include"
    base = root / "redraft"
    errors, seen_known = [], set()
    for path in sorted(base.rglob("*")):
        if path.suffix not in (".hpp", ".cuh") or path.parent == base:
            continue  # the umbrellas (redraft.hpp, train.hpp, cuda.cuh) include everything
        rel = path.relative_to(base).as_posix()
        layer = rel.split("/")[0]
        if layer not in ALLOWED:
            errors.append(f"{rel}: folder {layer}/ has no layer rule (add it to check_layers.py and docs)")
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            m = INCLUDE.match(line)
            if not m or m.group(1) == layer or m.group(1) in ALLOWED[layer]:
                continue
            if (rel, m.group(1)) in KNOWN:
                seen_known.add((rel, m.group(1)))
                continue
            errors.append(f"{rel}:{number}: {layer}/ may not include {m.group(1)}/ ({line.strip()})")
    for stale in sorted(set(KNOWN) - seen_known):
        errors.append(f"check_layers.py: known crossing {stale} no longer occurs: remove it from KNOWN")
    for e in errors:
        print(e)
    print(f"check_layers: {len(errors)} violation(s), {len(seen_known)} known crossing(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
