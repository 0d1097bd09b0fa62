#!/usr/bin/env bash
# speedup_table.sh: tokens per step and wall-clock speedup of speculative decoding over plain
# decoding of the same model in the same run, for beam_width W in {1,2,4,8,16} x beam_length L in
# {2,...,6}, greedy and sampling (T = 1, lossless verifier), on the shipped KJV target and its
# distilled draft head. Writes docs/speedup.csv and renders docs/speedup.png with gnuplot
# (installs the Debian package gnuplot-nox when gnuplot is missing). ~5-10 minutes on 2 cores.
#
# usage: tools/speedup_table.sh [BUILD_DIR]      (default: build; redraft-demo must be built)
# environment: TOKENS (per run, default 160), REPEATS (runs per cell, default 3), OUT (default
# docs), WIDTHS, LENGTHS (space-separated lists), TARGET, DRAFT (checkpoint directories), PROMPT.
#
# Each cell runs redraft-demo REPEATS times (sampling: seeds 1..REPEATS); the CSV holds the mean
# tokens per step and acceptance, and the median of the per-run speedups (each run times plain and
# speculative decoding back to back, so a burst of load from other processes mostly hits both).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
demo="$build/examples/redraft-demo"
out="${OUT:-$root/docs}"
tokens="${TOKENS:-160}"
repeats="${REPEATS:-3}"
widths="${WIDTHS:-1 2 4 8 16}"
lengths="${LENGTHS:-2 3 4 5 6}"
target="${TARGET:-$root/data/models/kjv-target}"
draft="${DRAFT:-$root/data/draft_heads/kjv}"
prompt="${PROMPT:-And it came to pass, when the king }"

[[ -x "$demo" ]] || { echo "speedup_table.sh: $demo not found (cmake --build $build --target redraft-demo)" >&2; exit 1; }
if ! command -v gnuplot > /dev/null; then
  apt-get install -y gnuplot-nox > /dev/null
fi
mkdir -p "$out"
csv="$out/speedup.csv"
echo "mode,width,length,tokens_per_step,speedup,plain_tokens_per_s,spec_tokens_per_s,draft_pct,target_pct" > "$csv"

for mode in greedy sampling; do
  for w in $widths; do
    for l in $lengths; do
      runs=""
      for ((r = 1; r <= repeats; ++r)); do
        args=(--target "$target" --draft "$draft" --width "$w" --length "$l" --max-tokens "$tokens" --prompt "$prompt" --quiet)
        [[ $mode == sampling ]] && args+=(--temperature 1 --verifier lossless --seed "$r")
        text="$("$demo" "${args[@]}")"
        # One line per run: tokens_per_step speedup plain_rate spec_rate draft% target%
        runs+="$(awk '
          /^tokens per step:/ { tps = $4 }
          /^time split:/ { gsub(/[%,]/, ""); d = $4; t = $8 }
          /^plain decoding:/ { p = $3 }
          /^speculative decoding:/ { s = $3 }
          /^speedup:/ { sp = $2; sub(/x$/, "", sp) }
          END { print tps, sp, p, s, d, t }' <<< "$text")"$'\n'
      done
      line="$(printf '%s' "$runs" | sort -k2,2g | awk -v mode="$mode" -v w="$w" -v l="$l" '
        { tps += $1; sp[NR] = $2; p += $3; s += $4; d += $5; t += $6 }
        END { m = sp[int((NR + 1) / 2)]
              printf "%s,%d,%d,%.3f,%.3f,%.1f,%.1f,%.1f,%.1f\n", mode, w, l, tps / NR, m, p / NR, s / NR, d / NR, t / NR }')"
      echo "$line" | tee -a "$csv"
    done
  done
done

# The plot: speedup and tokens per step against L, one line per W, greedy and sampling.
gnuplot <<EOF
set terminal pngcairo size 1200,900 font "sans,11"
set output "$out/speedup.png"
set datafile separator ","
set multiplot layout 2,2 title "redraft on $(nproc) CPU cores: KJV byte-level target (3.5M params) + distilled draft head"
set key top left
set grid
set xlabel "beam length L (root included)"
set xtics 1
do for [m in "greedy sampling"] {
  set title sprintf("tokens per step (%s)", m)
  set ylabel "emitted tokens / step"
  plot for [w in "$widths"] "$csv" using (strcol(1) eq m && \$2 == w+0 ? \$3 : 1/0):4 with linespoints title sprintf("W = %s", w)
}
do for [m in "greedy sampling"] {
  set title sprintf("wall-clock speedup over plain decoding (%s)", m)
  set ylabel "speedup (x)"
  plot for [w in "$widths"] "$csv" using (strcol(1) eq m && \$2 == w+0 ? \$3 : 1/0):5 with linespoints title sprintf("W = %s", w), 1 with lines dt 2 lc "black" notitle
}
unset multiplot
EOF
echo "wrote $csv and $out/speedup.png"
