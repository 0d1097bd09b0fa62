#!/usr/bin/env python3
"""Per-kernel table of an Nsight Compute CSV: where a CUDA call's device time goes.

Input: the CSV that `ncu --metrics gpu__time_duration.sum --csv --print-units base ...` prints
(lines before its header, such as ncu's own ==PROF== messages, are skipped). Each row is one
kernel launch. Output: one line per kernel, largest total first: launches, total and mean
microseconds, share of the total, grid and block of its first launch. A kernel's name is shortened
to what identifies it: the functor of a Thrust for_each, else the function name without its
namespaces and template arguments.

    python3 tools/ncu_kernels.py NCU.csv [--calls N]

--calls N: the launches came from N calls of the code profiled (e.g. N benchmark iterations inside
an NVTX range, scripts/gpu_check.sh); prints the kernel time and launch count per call too, to set
against the call's event-timed wall time (the difference is launch gaps, transfers and host work).
"""
import argparse
import csv
import io
import re
import sys

TIME_METRIC = "gpu__time_duration.sum"
UNIT_NS = {"ns": 1.0, "nsecond": 1.0, "us": 1e3, "usecond": 1e3, "ms": 1e6, "msecond": 1e6,
           "s": 1e9, "second": 1e9}


def short_name(name):
    """`void for_each::static_kernel<..., op_wrapper_t<long, redraft::beam_check_functor, ...` ->
    `for_each beam_check_functor`; `void kernels::verify_greedy_kernel<256, float>(...)` ->
    `verify_greedy_kernel<256, float>`."""
    wrapped = re.search(r"op_wrapper_t<[^,]+,\s*([\w:]+)", name)
    if wrapped:
        return "for_each " + wrapped.group(1).split("::")[-1]
    functor = re.search(r"for_each::static_kernel<[^,]+,\s*[^,]+,\s*([\w:]+)", name)
    if functor:  # a Thrust algorithm's own functor (fill, copy)
        return "for_each " + functor.group(1).split("::")[-1]
    head = re.sub(r"^void\s+", "", name)
    head = head.split("(", 1)[0]
    base = head.split("<", 1)[0].split("::")[-1]
    args = head[len(head.split("<", 1)[0]):]
    # Keep short template arguments (block sizes, element types); drop long ones (policies).
    return base + (args if 0 < len(args) <= 24 else "")


def read_launches(text):
    """[(short kernel name, ns, grid, block)] from an ncu CSV text."""
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith('"ID"')), None)
    if start is None:
        raise SystemExit("ncu_kernels: no CSV header (a line starting with \"ID\") in the input")
    launches = []
    for row in csv.DictReader(io.StringIO("\n".join(lines[start:]))):
        if row.get("Metric Name") != TIME_METRIC:
            continue
        unit = row.get("Metric Unit", "ns")
        if unit not in UNIT_NS:
            raise SystemExit(f"ncu_kernels: unknown time unit {unit!r} (run ncu with "
                             "--print-units base)")
        ns = float(row["Metric Value"].replace(",", "")) * UNIT_NS[unit]
        launches.append((short_name(row["Kernel Name"]), ns, row.get("Grid Size", ""),
                         row.get("Block Size", "")))
    if not launches:
        raise SystemExit(f"ncu_kernels: no {TIME_METRIC} rows in the input")
    return launches


def table(launches, calls=None):
    kernels = {}
    for name, ns, grid, block in launches:
        k = kernels.setdefault(name, {"n": 0, "ns": 0.0, "grid": grid, "block": block})
        k["n"] += 1
        k["ns"] += ns
    total = sum(k["ns"] for k in kernels.values())
    out = [f"{'kernel':<40} {'launches':>8} {'total us':>10} {'mean us':>9} {'share':>6}  "
           f"grid / block (first launch)"]
    for name, k in sorted(kernels.items(), key=lambda kv: -kv[1]["ns"]):
        out.append(f"{name:<40} {k['n']:>8} {k['ns'] / 1e3:>10.1f} {k['ns'] / k['n'] / 1e3:>9.2f} "
                   f"{100 * k['ns'] / total:>5.1f}%  {k['grid']} / {k['block']}")
    out.append(f"{'all':<40} {len(launches):>8} {total / 1e3:>10.1f}")
    if calls:
        out.append(f"per call ({calls} calls): {len(launches) / calls:.1f} launches, "
                   f"{total / calls / 1e3:.1f} us of kernel time")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", help="ncu --csv output ('-' for standard input)")
    parser.add_argument("--calls", type=int, help="how many calls the launches came from")
    args = parser.parse_args()
    if args.calls is not None and args.calls < 1:
        parser.error(f"--calls {args.calls} must be at least 1")
    text = sys.stdin.read() if args.csv == "-" else open(args.csv, encoding="utf-8").read()
    print(table(read_launches(text), args.calls))


if __name__ == "__main__":
    main()
