#!/usr/bin/env bash
# cost_plot.sh: which tree shapes can pay on this machine. Measures, on the shipped KJV target and
# its distilled draft head,
#   - the tree-pass cost: bench_target_cost's BM_verify CPU time for n nodes / for 1 node (a plain
#     step), n = 1..81                                          -> docs/cost_tree_pass.csv
#   - for every shape W x L (W in {1,2,4,8,16}, L in {2,...,6}), greedy and sampling (T = 1,
#     lossless): redraft-demo's tree nodes per step, tokens per step, and speedup; the whole
#     speculative step in plain steps is tokens per step / speedup -> docs/cost_shapes.csv
# and plots both against the node count with gnuplot (installs Debian's gnuplot-nox when missing):
# docs/cost.svg. A shape pays when its tokens per step lie above its whole-step cost.
#
# usage: tools/cost_plot.sh [BUILD_DIR]   (default: build; bench_target_cost and redraft-demo
#                                          must be built)
# environment: TOKENS (per demo run, default 160), REPEATS (demo runs per shape, default 3; the
# CSV holds the mean tokens per step and the median speedup), OUT (default docs), WIDTHS, LENGTHS,
# PLOT_ONLY=1 (redraw the plot from the CSVs already in OUT, measuring nothing).
#
# The measurements run under the exclusive lock /tmp/redraft-cpu.lock (taken once, for all of
# them), so builds on a shared machine do not run beside them. About 2-4 minutes on 2 cores.
set -euo pipefail

lock=/tmp/redraft-cpu.lock
if [[ "${PLOT_ONLY:-0}" != 1 && -z "${COST_PLOT_LOCKED:-}" ]]; then
  exec env COST_PLOT_LOCKED=1 flock -x "$lock" bash "${BASH_SOURCE[0]}" "$@"
fi

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
demo="$build/examples/redraft-demo"
bench="$build/bench/bench_target_cost"
out="${OUT:-$root/docs}"
tokens="${TOKENS:-160}"
repeats="${REPEATS:-3}"
widths="${WIDTHS:-1 2 4 8 16}"
lengths="${LENGTHS:-2 3 4 5 6}"
target="$root/data/models/kjv-target"
draft="$root/data/draft_heads/kjv"
prompt="And it came to pass, when the king "

for exe in "$demo" "$bench"; do
  [[ -x "$exe" ]] || { echo "cost_plot.sh: $exe not found (cmake --build $build --target redraft-demo bench_target_cost)" >&2; exit 1; }
done
[[ -f "$target/config.json" && -f "$draft/config.json" ]] || { echo "cost_plot.sh: the KJV target or head is missing under data/" >&2; exit 1; }
if ! command -v gnuplot > /dev/null; then
  apt-get install -y gnuplot-nox > /dev/null
fi
mkdir -p "$out"

verify_csv="$out/cost_tree_pass.csv"
shapes_csv="$out/cost_shapes.csv"
if [[ "${PLOT_ONLY:-0}" != 1 ]]; then
# 1. Tree-pass cost: median CPU time of 3 repetitions per node count, over the n = 1 time.
"$bench" --benchmark_filter='BM_verify/' --benchmark_repetitions=3 \
  --benchmark_report_aggregates_only=true --benchmark_format=csv 2> /dev/null |
  awk -F, '/_median"?,/ { split($1, a, "/"); n = a[2] + 0; t[n] = $4; order[++k] = n }
    END { print "nodes,cpu_us,plain_steps"
          for (i = 1; i <= k; ++i) printf "%d,%.1f,%.3f\n", order[i], t[order[i]], t[order[i]] / t[1] }' > "$verify_csv"
cat "$verify_csv"

# 2. Shapes: nodes per step, tokens per step, speedup (same-run ratio), whole-step cost.
echo "mode,width,length,nodes_per_step,tokens_per_step,speedup,step_cost" > "$shapes_csv"
for mode in greedy sampling; do
  for w in $widths; do
    for l in $lengths; do
      runs=""
      for ((r = 1; r <= repeats; ++r)); do
        args=(--target "$target" --draft "$draft" --width "$w" --length "$l" --max-tokens "$tokens" --prompt "$prompt" --quiet)
        [[ $mode == sampling ]] && args+=(--temperature 1 --verifier lossless --seed "$r")
        text="$("$demo" "${args[@]}")"
        runs+="$(awk '
          /^tokens per step:/ { tps = $4 }
          /^tree nodes per step:/ { nodes = $5 }
          /^speedup:/ { sp = $2; sub(/x$/, "", sp) }
          END { print nodes, tps, sp }' <<< "$text")"$'\n'
      done
      printf '%s' "$runs" | sort -k3,3g | awk -v mode="$mode" -v w="$w" -v l="$l" '
        { nodes += $1; tps += $2; sp[NR] = $3 }
        END { m = sp[int((NR + 1) / 2)]; t = tps / NR
              printf "%s,%d,%d,%.2f,%.3f,%.3f,%.3f\n", mode, w, l, nodes / NR, t, m, t / m }' | tee -a "$shapes_csv"
    done
  done
done

fi

# 3. The plot: one panel per mode.
gnuplot <<EOF
set terminal svg size 1200,600 dynamic font "DejaVu Sans,12" background "white"
set output "$out/cost.svg"
set datafile separator ","
set multiplot layout 1,2 title "Which tree shapes pay: KJV target (3.5M params) + distilled head, $(nproc) CPU cores ($(lscpu | sed -n 's/^Model name: *//p'))"
set grid
set key below maxrows 2
set xlabel "tree nodes verified per step (n)"
set ylabel "plain steps (cost) / tokens per step"
set logscale x 2
set xrange [0.9:100]
set yrange [0:*]
do for [m in "greedy sampling"] {
  set title sprintf("%s (labels: W x L): a shape pays where its dot is above its square", m)
  plot "$verify_csv" skip 1 using 1:3 with linespoints lw 2 pt 7 ps 0.5 lc "black" title "tree-pass cost (bench\\\\_target\\\\_cost)", \
       "$shapes_csv" skip 1 using (strcol(1) eq m ? \$4 : 1/0):7:(0):(\$5 - \$7) with vectors nohead dt 3 lc "gray" notitle, \
       "$shapes_csv" skip 1 using (strcol(1) eq m ? \$4 : 1/0):7 with points pt 4 ps 1.1 lc "#555555" title "whole step cost = tokens per step / speedup", \
       "$shapes_csv" skip 1 using (strcol(1) eq m && \$6 >= 1 ? \$4 : 1/0):5 with points pt 7 ps 1.1 lc "#1a7f37" title "tokens per step, speedup >= 1", \
       "$shapes_csv" skip 1 using (strcol(1) eq m && \$6 < 1 ? \$4 : 1/0):5 with points pt 7 ps 1.1 lc "#c00000" title "tokens per step, speedup < 1", \
       "$shapes_csv" skip 1 using (strcol(1) eq m ? \$4 : 1/0):5:(sprintf("%dx%d", \$2, \$3)) with labels left offset 0.7,0.3 font ",8" tc "#333333" notitle
}
unset multiplot
EOF
echo "wrote $verify_csv, $shapes_csv and $out/cost.svg"
