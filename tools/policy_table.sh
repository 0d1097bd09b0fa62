#!/usr/bin/env bash
# policy_table.sh: the adaptive speculation policy against every fixed draft shape, as same-run
# speedups over plain decoding, on the shipped KJV target and its distilled draft head, greedy and
# sampling (T = 1, lossless verifier), at batch 1, 4 and 16. Writes docs/policy.csv (one row per
# run) and prints, per mode and batch, the best fixed cell, the adaptive policy's median speedup,
# their ratio, the head-to-head ratios (the adaptive policy, the best fixed cell and the all-plain
# policy run next to each other, round by round; see below), the lowest speedup of any adaptive
# run, the speedup of the all-plain policy (the decoder's plain step against plain decoding: its
# overhead on the adaptive policy's fallback) and the shapes the policy picked (docs/results.md
# shows the table).
#
# usage: tools/policy_table.sh [BUILD_DIR]     (default: build; redraft-demo must be built)
# environment: BATCHES (default "1 4 16"), MODES ("greedy sampling"), TOKENS (per request,
#   default 160), DEMO_REPEAT (plain and speculative decoding timed this many times each inside
#   one run of redraft-demo, alternating which goes first, default 5), REPEATS (runs per cell,
#   default 1), HEAD_TO_HEAD (rounds of the adaptive policy against the best fixed cell and the
#   all-plain policy, run after the grid, default 4; 0: none), WIDTHS (fixed W at batch 1, default
#   "1 2 4 8 16"), WIDE_BATCH_WIDTHS (fixed W at batch > 1, default "1 2 4"), LENGTHS
#   ("2 3 4 5 6"), OUT (default docs), TARGET, DRAFT, PROMPT, PROMPTS_FILE (redraft-demo
#   --prompts-file: each repeat decodes the next batch of the file's prompts), LOCK (default
#   /tmp/redraft-cpu.lock, held exclusively during each block of runs; LOCK= runs without it),
#   APPEND (1: add to the existing CSV, see below), SUMMARY_ONLY (1: no runs, only the summary of
#   the existing CSV).
#
# Every run of redraft-demo times plain decoding and speculative decoding DEMO_REPEAT times each in
# one process, alternating which goes first (in a fresh process the first run pays for first-touch
# memory and cold caches), so each speedup is a same-run ratio: total plain time over total
# speculative time for the same tokens. The speculative decoder, and so the adaptive policy, persists
# across the repeats of a run as in a server (the first repeat calibrates, later ones start from
# what it learned). A cell's speedup is the median over the repeats of all its runs (each repeat a plain and a
# speculative run next to each other in time; the median discards the repeats that a burst of
# load on the machine hit on one side only) (sampling: run r uses seeds
# (r - 1) DEMO_REPEAT + 1 .. r DEMO_REPEAT, the same for every cell and for the adaptive policy).
# Runs are interleaved (all cells of repeat 1, then repeat 2, ...) so slow drift of the machine
# hits every cell alike. Absolute speeds depend on the machine and on the target's CPU kernels;
# the script records `lscpu` model name and flags in its output.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=tools/demo_common.sh
source "$root/tools/demo_common.sh"  # demo_run, awk_lib
build="${1:-$root/build}"
demo="$build/examples/redraft-demo"
out="${OUT:-$root/docs}"
batches="${BATCHES:-1 4 16}"
modes="${MODES:-greedy sampling}"
tokens="${TOKENS:-160}"
repeats="${REPEATS:-1}"
head_to_head="${HEAD_TO_HEAD:-4}"
demo_repeat="${DEMO_REPEAT:-5}"
widths="${WIDTHS:-1 2 4 8 16}"
wide_batch_widths="${WIDE_BATCH_WIDTHS:-1 2 4}"
lengths="${LENGTHS:-2 3 4 5 6}"
target="${TARGET:-$root/data/models/kjv-target}"
draft="${DRAFT:-$root/data/draft_heads/kjv}"
prompt="${PROMPT:-And it came to pass, when the king }"
prompts_file="${PROMPTS_FILE:-}"
lock="${LOCK-/tmp/redraft-cpu.lock}"

[[ -x "$demo" ]] || { echo "policy_table.sh: $demo not found (cmake --build $build --target redraft-demo)" >&2; exit 1; }
mkdir -p "$out"
csv="$out/policy.csv"
cpu="$(lscpu | sed -n 's/^Model name: *//p' | head -1)"
simd="$(grep -o -w -m1 -E 'avx512f|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ' || true)"
echo "# $(date -u +%FT%TZ) $cpu, $(nproc) cores, $simd; TOKENS=$tokens REPEATS=$repeats DEMO_REPEAT=$demo_repeat${prompts_file:+ PROMPTS_FILE=$prompts_file}" >&2
# APPEND=1 adds this invocation's runs to an existing docs/policy.csv (one mode and batch at a
# time, e.g. MODES=greedy BATCHES=4 APPEND=1, so no lock is held for long); the summary covers
# every row of the file.
[[ ( "${APPEND:-0}" == 1 || "${SUMMARY_ONLY:-0}" == 1 ) && -s "$csv" ]] || echo "mode,batch,policy,width,length,repeat,tokens_per_step,speedup,shapes,each" > "$csv"

[[ -n "$lock" ]] && exec 9> "$lock"

[[ "${SUMMARY_ONLY:-0}" == 1 ]] && repeats=0  # only the summary of the existing CSV
for ((r = 1; r <= repeats; ++r)); do
  for mode in $modes; do
    for b in $batches; do
      # One block (the adaptive policy and every fixed cell of one mode, batch and repeat) holds
      # the lock exclusively: no build runs beside it, and other jobs run between blocks.
      [[ -n "$lock" ]] && flock -x 9
      read -r tps sp shapes each < <(demo_run "$demo" "$mode" "$b" "$r" --policy adaptive)
      echo "$mode,$b,adaptive,0,0,$r,$tps,$sp,$shapes,$each" | tee -a "$csv" >&2
      # Every step plain through the speculative decoder: its overhead on the fallback step.
      read -r tps sp shapes each < <(demo_run "$demo" "$mode" "$b" "$r" --policy plain)
      echo "$mode,$b,plain,1,1,$r,$tps,$sp,$shapes,$each" | tee -a "$csv" >&2
      ws="$widths"
      [[ $b -gt 1 ]] && ws="$wide_batch_widths"
      for w in $ws; do
        for l in $lengths; do
          read -r tps sp shapes each < <(demo_run "$demo" "$mode" "$b" "$r" --width "$w" --length "$l")
          echo "$mode,$b,fixed,$w,$l,$r,$tps,$sp,$shapes,$each" | tee -a "$csv" >&2
        done
      done
      [[ -n "$lock" ]] && flock -u 9
    done
  done
done

# Head to head: the adaptive policy against the best fixed cell of the grid above (the highest
# median speedup among the fixed cells of its mode and batch; a tie goes to the narrower, then
# shorter cell, as in the summary) and against the all-plain policy,
# run by run: HEAD_TO_HEAD rounds of one adaptive run, one run of that cell and one all-plain run
# next to each other in time (odd rounds in that order, even rounds reversed; every side the same
# seeds). Cells of the grid run minutes apart on a machine whose speed drifts by more than the 5%
# the comparison is about; a round's runs are seconds apart. The all-plain side is the control
# for "never slower than plain decoding": it is plain decoding measured against itself through
# the speculative decoder, so its spread is what the measurement alone gives.
best_fixed() {  # "W L" of the best fixed cell of mode $1, batch $2 in the CSV (grid rows only)
  awk -F, -v mode="$1" -v batch="$2" "$awk_lib"'$1 == mode && $2 == batch && $3 == "fixed" {
      key = $4 " " $5; m = split($10, e, "|"); for (i = 1; i <= m; ++i) { n[key]++; v[key, n[key]] = e[i] }
    }
    END {
      for (key in n) {
        m = n[key]; delete a; for (i = 1; i <= m; ++i) a[i] = v[key, i] + 0
        s = sorted_median(a, m); split(key, wl, " ")
        # Ties go to the narrower, then shorter cell (the summary below breaks them alike).
        if (best == "" || s > bs || (s == bs && (wl[1] < bw || (wl[1] == bw && wl[2] < bl)))) {
          best = key; bs = s; bw = wl[1] + 0; bl = wl[2] + 0
        }
      }
      print best
    }' "$csv"
}
[[ "${SUMMARY_ONLY:-0}" == 1 ]] && head_to_head=0
# With APPEND=1 the rounds continue the numbering (and the seeds) of the CSV's earlier rounds.
declare -A first_round grid_repeats
for mode in $modes; do
  for b in $batches; do
    first_round[$mode,$b]=$(awk -F, -v mode="$mode" -v batch="$b" '$1 == mode && $2 == batch && $3 ~ /^h2h_/ && $6 > m { m = $6 } END { print m + 0 }' "$csv")
    grid_repeats[$mode,$b]=$(awk -F, -v mode="$mode" -v batch="$b" '$1 == mode && $2 == batch && $3 !~ /^h2h_/ && $6 > m { m = $6 } END { print m + 0 }' "$csv")
  done
done
for ((i = 1; i <= head_to_head; ++i)); do
  for mode in $modes; do
    for b in $batches; do
      r=$((first_round[$mode,$b] + i))
      read -r w l < <(best_fixed "$mode" "$b")
      [[ -n "$w" ]] || { echo "policy_table.sh: no fixed cell for $mode batch $b in $csv" >&2; exit 1; }
      [[ -n "$lock" ]] && flock -x 9
      # Seeds of round r: those a grid repeat after the last would use (fresh text, every side alike).
      seeds=$((grid_repeats[$mode,$b] + r))
      for side in $( ((r % 2)) && echo "adaptive fixed plain" || echo "plain fixed adaptive"); do
        case $side in
          adaptive)
            read -r tps sp shapes each < <(demo_run "$demo" "$mode" "$b" "$seeds" --policy adaptive)
            echo "$mode,$b,h2h_adaptive,0,0,$r,$tps,$sp,$shapes,$each" | tee -a "$csv" >&2 ;;
          fixed)
            read -r tps sp shapes each < <(demo_run "$demo" "$mode" "$b" "$seeds" --width "$w" --length "$l")
            echo "$mode,$b,h2h_fixed,$w,$l,$r,$tps,$sp,$shapes,$each" | tee -a "$csv" >&2 ;;
          plain)
            read -r tps sp shapes each < <(demo_run "$demo" "$mode" "$b" "$seeds" --policy plain)
            echo "$mode,$b,h2h_plain,1,1,$r,$tps,$sp,$shapes,$each" | tee -a "$csv" >&2 ;;
        esac
      done
      [[ -n "$lock" ]] && flock -u 9
    done
  done
done

# The summary: medians per cell, the best fixed cell, the adaptive policy against it.
echo "| mode | batch | best fixed W x L | its speedup | adaptive speedup | adaptive / best fixed | head to head: adaptive / best fixed (rounds) | head to head: adaptive / all-plain | adaptive, lowest run (all-plain's) | adaptive, first call | plain steps only | shapes the policy picked (share of steps) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
awk -F, "$awk_lib"'NR > 1 && $3 ~ /^h2h_/ {
    # A head-to-head run: its median repeat, by mode and batch, side and round.
    mb = $1 "," $2; m = split($10, e, "|"); delete a; for (i = 1; i <= m; ++i) a[i] = e[i] + 0
    h[mb, $3, $6] = sorted_median(a, m); hr[mb, $6] = 1
    if ($3 == "h2h_fixed") hcell[mb] = $4 " x " $5
    else if ($3 == "h2h_plain") { if (!(mb in lowest_plain) || $8 + 0 < lowest_plain[mb]) lowest_plain[mb] = $8 + 0 }
    else if (!(mb in lowest) || $8 + 0 < lowest[mb]) lowest[mb] = $8 + 0
    next
  }
  NR > 1 {
    key = $1 "," $2 "," $3 "," $4 "," $5
    if ($3 == "adaptive" && (!(($1 "," $2) in lowest) || $8 + 0 < lowest[$1 "," $2])) lowest[$1 "," $2] = $8 + 0
    if ($3 == "plain" && (!(($1 "," $2) in lowest_plain) || $8 + 0 < lowest_plain[$1 "," $2])) lowest_plain[$1 "," $2] = $8 + 0
    # Every repeat of a run is its own same-run pair: a cell speedup is the median over all.
    m = split($10 == "" ? $8 : $10, each, "|")
    for (i = 1; i <= m; ++i) { n[key]++; v[key, n[key]] = each[i] }
    if ($3 == "adaptive") { split($10, e, "|"); nf[$1 "," $2]++; vf[$1 "," $2, nf[$1 "," $2]] = e[1]; split($9, items, "|"); for (i in items) { split(items[i], kv, ":"); steps[$1 "," $2, kv[1]] += kv[2]; total[$1 "," $2] += kv[2] } }
  }
  function median(key,   m, i, a) {
    m = n[key]; for (i = 1; i <= m; ++i) a[i] = v[key, i] + 0
    return sorted_median(a, m)
  }
  function first_median(mb,   m, i, a) {
    m = nf[mb]; for (i = 1; i <= m; ++i) a[i] = vf[mb, i] + 0
    return sorted_median(a, m)
  }
  # The median over the rounds where both sides ran of (side / other side), each run by its
  # median repeat, with its 95% interval and the number of rounds: "median [lo, hi] (rounds)".
  function head_to_head(mb, side, other,   k, rk, g, ra, med, ci) {
    k = 0
    for (rk in hr) { split(rk, g, SUBSEP); if (g[1] == mb && ((mb, side, g[2]) in h) && ((mb, other, g[2]) in h)) ra[++k] = h[mb, side, g[2]] / h[mb, other, g[2]] }
    if (k == 0) return "-"
    med = sorted_median(ra, k); ci = median_ci(ra, k)
    return sprintf("%.3f%s (%d)", med, ci == "" ? "" : " " ci, k)
  }
  END {
    for (key in n) {
      split(key, f, ","); mb = f[1] "," f[2]
      if (f[3] == "fixed") {
        s = median(key); w = f[4] + 0; l = f[5] + 0
        if (!(mb in best) || s > best[mb] || (s == best[mb] && (w < bw[mb] || (w == bw[mb] && l < bl[mb])))) {
          best[mb] = s; cell[mb] = f[4] " x " f[5]; bw[mb] = w; bl[mb] = l
        }
      }
      else if (f[3] == "plain") plainsteps[mb] = median(key)
      else adaptive[mb] = median(key)
    }
    for (mb in adaptive) {
      split(mb, f, ","); picked = ""
      for (k in steps) { split(k, g, SUBSEP); if (g[1] == mb) list[g[2]] = steps[k] }
      while (length(list) > 0) {
        top = ""; for (s in list) if (top == "" || list[s] > list[top]) top = s
        if (list[top] / total[mb] >= 0.05) picked = picked (picked == "" ? "" : ", ") sprintf("%s %.0f%%", top == "plain" ? "plain" : top, 100 * list[top] / total[mb])
        delete list[top]
      }
      h2h = head_to_head(mb, "h2h_adaptive", "h2h_fixed")
      if (h2h != "-") h2h = h2h " vs " hcell[mb]
      low = sprintf("%.2fx", lowest[mb]) ((mb in lowest_plain) ? sprintf(" (%.2fx)", lowest_plain[mb]) : "")
      printf "%s|%d|%s|%.2fx|%.2fx|%.3f|%s|%s|%s|%.2fx|%.2fx|%s\n", f[1], f[2], cell[mb], best[mb], adaptive[mb], adaptive[mb] / best[mb], h2h, head_to_head(mb, "h2h_adaptive", "h2h_plain"), low, first_median(mb), plainsteps[mb], picked
    }
  }' "$csv" | sort -t'|' -k1,1 -k2,2n | sed 's/|/ | /g; s/^/| /; s/$/ |/'
echo "wrote $csv" >&2
