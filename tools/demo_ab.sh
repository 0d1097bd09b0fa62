#!/usr/bin/env bash
# demo_ab.sh: an A/B comparison of two redraft-demo binaries (two builds of the library, e.g. a
# change to the adaptive policy and the commit before it) or of two sets of flags, on the shipped
# KJV target and its distilled draft head, as same-run speedups over plain decoding, greedy and
# sampling (T = 1, lossless verifier), at batch 1, 4 and 16. Prints, per mode and batch, each
# side's median speedup, the median over rounds of B / A with its 95% interval, how many rounds B
# won, and each side's lowest run; writes every run to a CSV.
#
# usage: tools/demo_ab.sh DEMO_A DEMO_B [FLAGS...]
#   DEMO_A, DEMO_B  redraft-demo binaries (the same one twice to compare flags)
#   FLAGS           passed to both sides (default none: the demo's default, the adaptive policy)
# environment: FLAGS_A, FLAGS_B (more flags for one side only, split at spaces), ROUNDS (default
#   8), BATCHES ("1 4 16"), MODES ("greedy sampling"), TOKENS (per request, default 160),
#   DEMO_REPEAT (plain and speculative decoding timed this many times each inside one run,
#   default 5), OUT (the CSV, default ${TMPDIR:-/tmp}/demo_ab.csv), TARGET, DRAFT,
#   PROMPT, PROMPTS_FILE (redraft-demo --prompts-file: each repeat decodes the next batch of the
#   file's prompts instead of PROMPT), LOCK (default /tmp/redraft-cpu.lock, held exclusively
#   during each round of one mode and batch; LOCK= runs without it).
#
# A round runs A and B next to each other in time (odd rounds A first, even rounds B first), with
# the same seeds; each run's speedup is the median of its DEMO_REPEAT same-run pairs (as in
# tools/policy_table.sh's head to head). The rounds of one cell are minutes apart, so a drift of
# the machine's speed hits both sides of a round alike and the per-round ratio B / A cancels it.
# Example: the adaptive policy against fixed 1 x 4 in one build:
#   FLAGS_A="--policy adaptive" FLAGS_B="--width 1 --length 4" tools/demo_ab.sh \
#       build/examples/redraft-demo build/examples/redraft-demo
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/demo_common.sh
source "$root/tools/demo_common.sh"
[[ $# -ge 2 ]] || { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
demo_a=$1 demo_b=$2
shift 2
for d in "$demo_a" "$demo_b"; do
  [[ -x "$d" ]] || { echo "demo_ab.sh: '$d' is not an executable redraft-demo" >&2; exit 1; }
done
read -r -a flags_a <<< "${FLAGS_A:-}"
read -r -a flags_b <<< "${FLAGS_B:-}"
rounds="${ROUNDS:-8}"
batches="${BATCHES:-1 4 16}"
modes="${MODES:-greedy sampling}"
tokens="${TOKENS:-160}"
demo_repeat="${DEMO_REPEAT:-5}"
csv="${OUT:-${TMPDIR:-/tmp}/demo_ab.csv}"
target="${TARGET:-$root/data/models/kjv-target}"
draft="${DRAFT:-$root/data/draft_heads/kjv}"
prompt="${PROMPT:-And it came to pass, when the king }"
prompts_file="${PROMPTS_FILE:-}"
lock="${LOCK-/tmp/redraft-cpu.lock}"
[[ $rounds =~ ^[1-9][0-9]*$ ]] || { echo "demo_ab.sh: ROUNDS '$rounds' must be a positive integer" >&2; exit 1; }

cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
echo "# $(date -u +%FT%TZ) $cpu, $(nproc) cores; A: $demo_a ${flags_a[*]} | B: $demo_b ${flags_b[*]} | both: $* ; ROUNDS=$rounds DEMO_REPEAT=$demo_repeat TOKENS=$tokens${prompts_file:+ PROMPTS_FILE=$prompts_file}" >&2
echo "mode,batch,round,side,tokens_per_step,speedup,shapes,each" > "$csv"
[[ -n "$lock" ]] && exec 9> "$lock"
for ((r = 1; r <= rounds; ++r)); do
  for mode in $modes; do
    for b in $batches; do
      [[ -n "$lock" ]] && flock -x 9
      for side in $( ((r % 2)) && echo "A B" || echo "B A"); do
        if [[ $side == A ]]; then
          read -r tps sp shapes each < <(demo_run "$demo_a" "$mode" "$b" "$r" "$@" "${flags_a[@]}")
        else
          read -r tps sp shapes each < <(demo_run "$demo_b" "$mode" "$b" "$r" "$@" "${flags_b[@]}")
        fi
        echo "$mode,$b,$r,$side,$tps,$sp,$shapes,$each" | tee -a "$csv" >&2
      done
      [[ -n "$lock" ]] && flock -u 9
    done
  done
done

echo "| mode | batch | A median | B median | B / A, median of rounds [95%] | B ahead | lowest run A / B |"
echo "|---|---|---|---|---|---|---|"
awk -F, "$awk_lib"'NR > 1 {
    mb = $1 "," $2; m = split($8, e, "|"); delete a; for (i = 1; i <= m; ++i) a[i] = e[i] + 0
    s[mb, $4, $3] = sorted_median(a, m); seen[mb] = 1; rr[mb, $3] = 1
    if (!((mb, $4) in low) || s[mb, $4, $3] < low[mb, $4]) low[mb, $4] = s[mb, $4, $3]
  }
  END {
    for (mb in seen) {
      k = 0; na = 0; nb = 0; ahead = 0; delete ra; delete va; delete vb
      for (key in rr) {
        split(key, g, SUBSEP); if (g[1] != mb) continue
        if ((mb, "A", g[2]) in s) va[++na] = s[mb, "A", g[2]]
        if ((mb, "B", g[2]) in s) vb[++nb] = s[mb, "B", g[2]]
        if (((mb, "A", g[2]) in s) && ((mb, "B", g[2]) in s)) {
          ra[++k] = s[mb, "B", g[2]] / s[mb, "A", g[2]]; ahead += ra[k] > 1
        }
      }
      med = k ? sorted_median(ra, k) : 0; ci = k ? median_ci(ra, k) : ""
      split(mb, f, ",")
      printf "%s|%d|%.2fx|%.2fx|%.3f%s (%d)|%d of %d|%.2fx / %.2fx\n", f[1], f[2], sorted_median(va, na),
             sorted_median(vb, nb), med, ci == "" ? "" : " " ci, k, ahead, k, low[mb, "A"], low[mb, "B"]
    }
  }' "$csv" | sort -t'|' -k1,1 -k2,2n | sed 's/|/ | /g; s/^/| /; s/$/ |/'
echo "wrote $csv" >&2
