#!/usr/bin/env python3
"""Fails when a header under include/redraft/ includes a folder its layer may not depend on.

The rules (docs/architecture.md) as a table: folder -> folders it may include besides itself.
Arrows point down only: algorithms depend on the vocabulary (core/) and the step logic (step/),
backends depend on core/ and step/ only (a fused kernel runs the same step code the generic
functor runs), step/ depends on core/ only, and nothing below the loop knows about the loop.

  check_layers.py [INCLUDE_DIR]      (default: include/ beside this script's parent)
"""
import pathlib
import re
import sys

ALLOWED = {
    "core": set(),
    "step": {"core"},
    "cpu": {"core"},
    "cuda": {"core", "step"},
    "draft": {"core", "step"},
    "tree": {"core", "step"},
    "verify": {"core", "step"},
    "kv": {"core", "step", "verify"},
    "loop": {"core", "step", "draft", "tree", "verify", "kv"},
    "train": {"core", "step", "cpu", "draft", "tree", "verify", "kv", "loop"},
    "testing": {"core", "step", "cpu", "draft", "tree", "verify", "kv", "loop", "train"},
}
# Known debt, each with the reason it is still there; remove an entry when its include goes.
# The check fails on any other crossing, and on an entry here that no longer occurs.
KNOWN = {}
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
