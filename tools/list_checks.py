#!/usr/bin/env python3
"""Lists every validated input of the public headers: each REDRAFT_REQUIRE / throw_error in
include/redraft, as markdown (the catalog in docs/reliability.md), grouped by header, with the
condition that must hold and the message template (non-literal parts shown as <expr>).
Usage: python3 tools/list_checks.py [include/redraft] > catalog.md"""
import os
import re
import sys


def split_args(text):
    """Splits a call's argument text at top-level commas (strings and brackets respected)."""
    args, depth, cur, i = [], 0, "", 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            j = i + 1
            while text[j] != c:
                j += 2 if text[j] == "\\" else 1
            cur += text[i:j + 1]
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        if c == "," and depth == 0:
            args.append(cur.strip())
            cur = ""
        else:
            cur += c
        i += 1
    if cur.strip():
        args.append(cur.strip())
    return args


def call_text(src, start):
    """The text between the '(' at start and its matching ')'."""
    depth, i = 0, start
    while True:
        c = src[i]
        if c in "\"'":
            j = i + 1
            while src[j] != c:
                j += 2 if src[j] == "\\" else 1
            i = j + 1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return src[start + 1:i]
        i += 1


def render(parts):
    out = ""
    for p in parts:
        lits = re.findall(r'"((?:[^"\\]|\\.)*)"', p)
        if lits and re.fullmatch(r'(\s*"(?:[^"\\]|\\.)*"\s*)+', p):
            out += "".join(lits)
        else:
            out += "<" + re.sub(r"\s+", " ", p) + ">"
    return out.replace("|", "\\|")


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "include/redraft"
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            src = open(path).read()
            rows = []
            for m in re.finditer(r"\b(REDRAFT_REQUIRE|throw_error)\(", src):
                if src[max(0, m.start() - 8):m.start()].endswith("define "):
                    continue
                line = src.count("\n", 0, m.start()) + 1
                if src[src.rfind("\n", 0, m.start()) + 1:m.start()].lstrip().startswith("//"):
                    continue
                args = split_args(call_text(src, m.end() - 1))
                if m.group(1) == "REDRAFT_REQUIRE":
                    cond, parts = re.sub(r"\s+", " ", args[0]), args[1:]
                else:
                    cond, parts = "(always throws)", args
                rows.append((line, cond.replace("|", "\\|"), render(parts)))
            if rows and not path.endswith("core/error.hpp"):
                print(f"\n### `{os.path.relpath(path, os.path.dirname(root))}`\n")
                print("| line | must hold | message |\n|---|---|---|")
                for line, cond, msg in rows:
                    print(f"| {line} | `{cond}` | {msg} |")


main()
