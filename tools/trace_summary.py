#!/usr/bin/env python3
"""Summarises an adaptive policy trace (the CSV of `redraft-demo --policy-trace FILE`, columns in
include/redraft/loop/policy_trace.hpp): what a run chose and why, read back from the CSV alone.

usage: python3 tools/trace_summary.py TRACE.csv [--step RUN STEP] [--probes N] [--costs]
                                      [--loss SHAPE]
       python3 tools/trace_summary.py --loss SHAPE TRACE.csv [TRACE.csv ...]

Prints
  per call (the trace's `run`): steps, tokens, seconds, tokens/s; the shapes chosen (share of
    steps); calibrate / exploit / probe counts; the plain steps a call opens with (before its
    first tree, calibration excluded); at the call's last step the speed factor, kappa in
    microseconds per context token (speed x kappa), the probe budget left (allowance minus
    what probes were charged) and the charge;
  per shape: steps, measured tokens/s (its emitted tokens over its time), and for its exploiting
    steps the estimated tokens against the emitted ones (the acceptance estimates' bias);
  the N probes with the largest measured loss: the step's time minus the time the best shape of
    the moment would have needed for its tokens at its estimated rate (the budget is charged
    this, its tokens counted at least at their floor), and the budget left when it was chosen;
  with --step RUN STEP, every candidate's estimate at that step (the best marked *);
  with --costs, per call and measured node count: steps, median context, and the median measured
    verify cost, as measured and divided by the step's speed factor (the units the policy stores
    costs in), so drift between calls and between the counts' scales shows, and the measured
    cost's least-squares slope over the context in the call (us per context token; '-' for fewer
    than 8 steps or a context spread under 100 tokens);
  with --loss SHAPE (e.g. 1x2), where the time went against running SHAPE alone: each step's
    time minus the time SHAPE would have needed for its tokens, at the rate of the 8 exploiting
    steps of SHAPE nearest to it in the same call (their tokens over their time; the call's
    first step and the step itself left out; nearest, because a step's cost grows with its
    context), summed by cause: a call's first step (it runs cold), calibration, probes and
    exploiting steps, each per shape, as a share of all the decoding time. Negative: faster
    than SHAPE. Calls with fewer than 4 exploiting steps of SHAPE are left out (no rate to
    compare with). It is a same-process estimate: it cannot see what SHAPE run alone would have
    accepted differently (on text that loops, where steps begin changes what they accept), and
    where SHAPE ran only early or only late in a call, the other end is compared with a rate
    from another context.
    With several traces, only this table is printed, summed over all of them.
Standard library only (no numpy), so it runs on any Python 3.
"""
import argparse
import csv
import re
import sys
from collections import Counter, OrderedDict


def fnum(row, key):
    return float(row[key])


def load(path):
    """Steps in trace order: (run, step) -> {'step': first row, 'candidates': [rows]}."""
    steps = OrderedDict()
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            key = (int(row["run"]), int(row["step"]))
            entry = steps.setdefault(key, {"step": row, "candidates": []})
            entry["candidates"].append(row)
    if not steps:
        sys.exit(f"trace_summary: {path} has no rows")
    for key, entry in steps.items():
        best = [c for c in entry["candidates"] if c["best"] == "1"]
        if len(best) > 1:
            sys.exit(f"trace_summary: run {key[0]} step {key[1]} marks {len(best)} candidates best")
        entry["best"] = best[0] if best else None
    return steps


def seconds(row):
    return fnum(row, "draft_s") + fnum(row, "verify_s")


def shares(counter, total):
    return ", ".join(f"{k} {100.0 * v / total:.0f}%" for k, v in counter.most_common())


def calls(steps):
    """The trace's calls in order: run -> its steps' first rows, in step order."""
    runs = OrderedDict()
    for (run, _), entry in steps.items():
        runs.setdefault(run, []).append(entry["step"])
    return runs


def per_call(steps):
    print("## per call")
    print("| run | steps | tokens | seconds | tokens/s | shapes (share of steps) | calibrate / exploit "
          "/ probe | opens with plain steps | speed | kappa us/token | budget left ms | probes "
          "charged ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run, rows in calls(steps).items():
        tokens = sum(int(r["emitted"]) for r in rows)
        time = sum(seconds(r) for r in rows)
        shapes = Counter(r["shape"] for r in rows)
        choices = Counter(r["choice"] for r in rows)
        opening = 0
        for r in rows:
            if r["choice"] == "calibrate":
                continue
            if r["shape"] != "plain":
                break
            opening += 1
        last = rows[-1]
        kappa_us = 1e6 * fnum(last, "speed") * fnum(last, "kappa")
        left_ms = 1e3 * (fnum(last, "budget_s") - fnum(last, "probe_loss_s"))
        print(f"| {run} | {len(rows)} | {tokens} | {time:.4f} | {tokens / time if time else 0:.0f} "
              f"| {shares(shapes, len(rows))} | {choices['calibrate']} / {choices['exploit']} / "
              f"{choices['probe']} | {opening} | {fnum(last, 'speed'):.3f} | {kappa_us:.3f} | "
              f"{left_ms:.2f} | {1e3 * fnum(last, 'probe_loss_s'):.2f} |")


def per_shape(steps):
    print("\n## per shape")
    print("| shape | steps | tokens/s measured | exploiting steps | tokens estimated | tokens "
          "emitted | emitted / estimated |")
    print("|---|---|---|---|---|---|---|")
    stats = {}
    for entry in steps.values():
        r = entry["step"]
        s = stats.setdefault(r["shape"], {"steps": 0, "tokens": 0, "time": 0.0, "n": 0,
                                          "est": 0.0, "emitted": 0})
        s["steps"] += 1
        s["tokens"] += int(r["emitted"])
        s["time"] += seconds(r)
        if r["choice"] == "exploit":
            chosen = next(c for c in entry["candidates"] if c["candidate"] == r["shape"])
            s["n"] += 1
            s["est"] += fnum(chosen, "tokens")
            s["emitted"] += int(r["emitted"])
    for shape, s in sorted(stats.items(), key=lambda kv: -kv[1]["steps"]):
        rate = s["tokens"] / s["time"] if s["time"] else 0
        ratio = f"{s['emitted'] / s['est']:.3f}" if s["est"] else "-"
        print(f"| {shape} | {s['steps']} | {rate:.0f} | {s['n']} | {s['est']:.1f} | {s['emitted']} "
              f"| {ratio} |")


def probes(steps, count):
    print(f"\n## the {count} probes with the largest measured loss")
    print("| run | step | shape | seconds | emitted | tokens estimated | best then | best's rate "
          "| loss ms | budget left when chosen ms |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for (run, step), entry in steps.items():
        r = entry["step"]
        best = entry["best"]
        if r["choice"] != "probe" or best is None or fnum(best, "rate") <= 0:
            continue
        chosen = next(c for c in entry["candidates"] if c["candidate"] == r["shape"])
        # What the policy charges before the token floor and plain_margin's worth (a tree probed
        # while plain is best counts its tokens at 1 / 1.05): the step's time minus its tokens at
        # the best shape's estimated rate.
        loss = seconds(r) - int(r["emitted"]) / fnum(best, "rate")
        left = fnum(r, "budget_s") - fnum(r, "probe_loss_s")
        rows.append((loss, run, step, r, chosen, best, left))
    rows.sort(key=lambda t: -t[0])
    for loss, run, step, r, chosen, best, left in rows[:count]:
        print(f"| {run} | {step} | {r['shape']} | {seconds(r):.5f} | {r['emitted']} | "
              f"{fnum(chosen, 'tokens'):.1f} | {best['candidate']} | {fnum(best, 'rate'):.0f} | "
              f"{1e3 * loss:.2f} | {1e3 * left:.2f} |")
    if not rows:
        print("(no probes)")


def one_step(steps, run, step):
    entry = steps.get((run, step))
    if entry is None:
        sys.exit(f"trace_summary: the trace has no run {run} step {step}")
    r = entry["step"]
    print(f"\n## run {run} step {step}: {r['choice']} {r['shape']}, measured {r['nodes']} nodes, "
          f"{r['emitted']} tokens in {1e3 * seconds(r):.3f} ms; context {r['context']}, speed "
          f"{fnum(r, 'speed'):.3f}")
    print("| candidate | tokens | nodes | draft ms | verify ms | tokens/s | optimistic | cost "
          "weight |")
    print("|---|---|---|---|---|---|---|---|")
    for c in entry["candidates"]:
        mark = "*" if c["best"] == "1" else ""
        print(f"| {c['candidate']}{mark} | {fnum(c, 'tokens'):.2f} | {fnum(c, 'est_nodes'):.1f} | "
              f"{1e3 * fnum(c, 'est_draft_s'):.3f} | {1e3 * fnum(c, 'est_verify_s'):.3f} | "
              f"{fnum(c, 'rate'):.0f} | {fnum(c, 'optimistic_rate'):.0f} | "
              f"{fnum(c, 'cost_weight'):.1f} |")


def median(values):
    v = sorted(values)
    m = len(v)
    return v[m // 2] if m % 2 else (v[m // 2 - 1] + v[m // 2]) / 2


def context_slope(rows):
    """Least-squares slope of the measured verify cost over the context, in us per context token,
    over a call's steps of one node count (its first, cold step left out); None where fewer than
    8 steps or a context spread under 100 tokens leave it to the noise. NOTE: a regression over a
    call also reads a drift of the machine's speed as context; the policy's kappa uses pairs of
    steps a few apart instead (docs/loop.md)."""
    points = [(fnum(r, "context"), fnum(r, "verify_s")) for r in rows if int(r["step"]) > 1]
    if len(points) < 8:
        return None
    xs = [c for c, _ in points]
    if max(xs) - min(xs) < 100:
        return None
    mx = sum(xs) / len(xs)
    my = sum(y for _, y in points) / len(points)
    return 1e6 * (sum((c - mx) * (y - my) for c, y in points) /
                  sum((c - mx) ** 2 for c in xs))


def costs(steps):
    print("\n## measured verify cost per call and node count")
    print("| run | nodes | steps | median context | median verify ms | median verify / speed ms | "
          "context slope us/token |")
    print("|---|---|---|---|---|---|---|")
    groups = OrderedDict()
    for (run, _), entry in sorted(steps.items()):
        r = entry["step"]
        groups.setdefault((run, int(r["nodes"])), []).append(r)
    for (run, nodes), rows in sorted(groups.items()):
        verify = [fnum(r, "verify_s") for r in rows]
        stored = [fnum(r, "verify_s") / fnum(r, "speed") for r in rows]
        slope = context_slope(rows)
        print(f"| {run} | {nodes} | {len(rows)} | {median([fnum(r, 'context') for r in rows]):.0f} "
              f"| {1e3 * median(verify):.3f} | {1e3 * median(stored):.3f} | "
              f"{'-' if slope is None else f'{slope:.2f}'} |")


def local_rate(ref, step, nearest=8):
    """Tokens per second of the `nearest` reference steps closest to `step` in its call (itself
    left out): a step's cost grows with its context, so a rate from the call's start would make
    late steps look slow."""
    near = sorted((r for r in ref if int(r["step"]) != step),
                  key=lambda r: abs(int(r["step"]) - step))[:nearest]
    return sum(int(r["emitted"]) for r in near) / sum(seconds(r) for r in near)


def time_lost(traces, reference):
    print(f"\n## time lost against {reference} (the rate of its nearest exploiting steps)")
    lost, count = Counter(), Counter()
    total, compared, skipped = 0.0, 0, 0
    for steps in traces:
        for rows in calls(steps).values():
            ref = [r for r in rows if r["shape"] == reference and r["choice"] == "exploit"
                   and int(r["step"]) > 1]
            ref_time = sum(seconds(r) for r in ref)
            if len(ref) < 4 or ref_time <= 0:
                skipped += 1
                continue
            compared += 1
            for r in rows:
                rate = local_rate(ref, int(r["step"]))
                cause = "first step" if int(r["step"]) == 1 else r["choice"]
                key = (cause, r["shape"])
                lost[key] += seconds(r) - int(r["emitted"]) / rate
                count[key] += 1
                total += seconds(r)
    print(f"{compared} calls compared, {skipped} left out (fewer than 4 exploiting steps of "
          f"{reference})")
    if not compared:
        return
    print("| cause | shape | steps | time lost ms | share of the decoding time |")
    print("|---|---|---|---|---|")
    order = {"first step": 0, "calibrate": 1, "probe": 2, "exploit": 3}
    for key in lost:  # sums that cancel print as 0, not -0
        lost[key] = round(lost[key], 12) + 0.0
    for (cause, shape), value in sorted(lost.items(), key=lambda kv: (order[kv[0][0]], -kv[1])):
        print(f"| {cause} | {shape} | {count[(cause, shape)]} | {1e3 * value:.2f} | "
              f"{100.0 * value / total:.2f}% |")
    print(f"| all | | {sum(count.values())} | {1e3 * sum(lost.values()):.2f} | "
          f"{100.0 * sum(lost.values()) / total:.2f}% |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("trace", nargs="+")
    parser.add_argument("--step", nargs=2, type=int, metavar=("RUN", "STEP"))
    parser.add_argument("--probes", type=int, default=5)
    parser.add_argument("--costs", action="store_true")
    parser.add_argument("--loss", metavar="SHAPE")
    args = parser.parse_args()
    if args.probes < 0:
        sys.exit(f"trace_summary: --probes {args.probes} must be >= 0")
    shape = re.compile(r"plain|[1-9][0-9]*x[1-9][0-9]*")
    if args.loss is not None and not shape.fullmatch(args.loss):
        sys.exit(f"trace_summary: --loss {args.loss!r} is not a shape ('plain' or WxL, e.g. 1x2)")
    if len(args.trace) > 1:
        if args.loss is None or args.step or args.costs:
            sys.exit(f"trace_summary: {len(args.trace)} traces given; several traces take --loss "
                     "SHAPE alone (the other tables read one trace)")
        time_lost([load(t) for t in args.trace], args.loss)
        return
    steps = load(args.trace[0])
    per_call(steps)
    per_shape(steps)
    probes(steps, args.probes)
    if args.costs:
        costs(steps)
    if args.loss is not None:
        time_lost([steps], args.loss)
    if args.step:
        one_step(steps, *args.step)


if __name__ == "__main__":
    main()
