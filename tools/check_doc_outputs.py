#!/usr/bin/env python3
"""Keeps the example outputs shown in docs/ equal to what the example binaries print.

A page marks a block with an HTML comment on the line before its fence:

    <!-- example-output: tree-example -->
    ```text
    ...the program's stdout, verbatim...
    ```

  check_doc_outputs.py BIN_DIR DOC...            exit 1 and print a diff when a block differs
  check_doc_outputs.py --update BIN_DIR DOC...   rewrite the blocks from the programs' output

  --examples DIR     also require every example program (DIR/<name>.cpp, executable <na-me>)
                     to have a marker in one of the DOCs ...
  --skip NAME        ... except NAME (repeatable): a program whose output is not deterministic
                     (timings), said so where the option is given

A generated file (a picture: docs/*.svg) names its program on its first line instead, and the
whole file is the program's output:

    <!-- generated-by: step-picture step -->
    <svg ...

BIN_DIR holds the example executables (build/examples). CTest runs the check (doc_example_outputs),
so a worked example on a page, or a picture, cannot drift from its program.
"""
import difflib
import pathlib
import re
import subprocess
import sys

MARK = re.compile(r"^<!-- example-output: ([A-Za-z0-9_.-]+)((?: [^ ]+)*) -->$")
GENERATED = re.compile(r"^<!-- generated-by: ([A-Za-z0-9_.-]+)((?: [^ ]+)*) -->$")


def run(bin_dir, name, args):
    exe = pathlib.Path(bin_dir) / name
    if not exe.exists():
        sys.exit(f"check_doc_outputs: {exe} does not exist (build the examples first)")
    return subprocess.run([str(exe), *args], check=True, capture_output=True, text=True).stdout


def process_generated(bin_dir, doc, update):
    """A file whose first line is a generated-by marker: the whole file is the program's stdout."""
    text = pathlib.Path(doc).read_text()
    m = GENERATED.match(text.split("\n", 1)[0])
    name, args = m.group(1), m.group(2).split()
    actual = run(bin_dir, name, args)
    if not actual.startswith(text.split("\n", 1)[0] + "\n"):
        sys.exit(f"check_doc_outputs: `{name} {' '.join(args)}` does not print {doc}'s first line")
    if text == actual:
        return True
    if update:
        pathlib.Path(doc).write_text(actual)
    else:
        print(f"{doc} differs from the output of `{name} {' '.join(args)}`:")
        sys.stdout.writelines(
            l + "\n" for l in difflib.unified_diff(text.split("\n"), actual.split("\n"), "committed", "actual",
                                                   lineterm=""))
    return False


def process(bin_dir, doc, update):
    text = pathlib.Path(doc).read_text()
    if GENERATED.match(text.split("\n", 1)[0]):
        return process_generated(bin_dir, doc, update)
    lines = text.split("\n")
    out, i, ok, found = [], 0, True, 0
    while i < len(lines):
        out.append(lines[i])
        m = MARK.match(lines[i])
        if not m:
            i += 1
            continue
        found += 1
        name, args = m.group(1), m.group(2).split()
        if i + 1 >= len(lines) or not lines[i + 1].startswith("```"):
            sys.exit(f"{doc}:{i + 1}: marker for {name} is not followed by a ``` fence")
        end = i + 2
        while end < len(lines) and lines[end] != "```":
            end += 1
        if end == len(lines):
            sys.exit(f"{doc}:{i + 2}: unterminated fence after the marker for {name}")
        shown = lines[i + 2 : end]
        actual = run(bin_dir, name, args).rstrip("\n").split("\n")
        if shown != actual:
            ok = False
            if not update:
                print(f"{doc}: the output shown for `{name} {' '.join(args)}` differs from the program's:")
                sys.stdout.writelines(
                    l + "\n" for l in difflib.unified_diff(shown, actual, "shown", "actual", lineterm=""))
        out.append(lines[i + 1])
        out.extend(actual if update else shown)
        out.append("```")
        i = end + 1
    if found == 0:
        sys.exit(f"check_doc_outputs: {doc} has no example-output or generated-by marker")
    if update:
        pathlib.Path(doc).write_text("\n".join(out))
    return ok


def option_values(argv, flag):
    """Removes every `flag VALUE` pair from argv; returns the values."""
    values = []
    while flag in argv:
        i = argv.index(flag)
        if i + 1 >= len(argv):
            sys.exit(f"check_doc_outputs: {flag} needs a value")
        values.append(argv[i + 1])
        del argv[i : i + 2]
    return values


def uncovered_examples(examples_dir, skip, docs):
    """The example programs of examples_dir that no DOC marks, other than those in skip."""
    named = set()
    for doc in docs:
        for line in pathlib.Path(doc).read_text().split("\n"):
            m = MARK.match(line) or GENERATED.match(line)
            if m:
                named.add(m.group(1))
    programs = sorted(p.stem.replace("_", "-") for p in pathlib.Path(examples_dir).glob("*.cpp"))
    return [p for p in programs if p not in named and p not in skip]


def main(argv):
    update = "--update" in argv
    argv = [a for a in argv if a != "--update"]
    examples = option_values(argv, "--examples")
    skip = set(option_values(argv, "--skip"))
    if len(argv) < 2:
        sys.exit(__doc__)
    bin_dir, docs = argv[0], argv[1:]
    for examples_dir in examples:
        missing = uncovered_examples(examples_dir, skip, docs)
        if missing:
            sys.exit(f"check_doc_outputs: no page shows the output of {', '.join(missing)} "
                     f"(add an example-output marker, or --skip it if its output is not deterministic)")
    results = [process(bin_dir, doc, update) for doc in docs]
    if update:
        print(f"check_doc_outputs: updated {len(docs)} page(s)")
        return 0
    if all(results):
        print(f"check_doc_outputs: {len(docs)} page(s) match their programs")
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
