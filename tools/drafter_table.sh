#!/usr/bin/env bash
# drafter_table.sh: prompt lookup alone, the draft head alone, and the hybrid (head + lookup in one
# tree), each against plain decoding of the same model in the same run, on the shipped KJV target
# and its distilled draft head: greedy and T = 1 (lossless verifier), batch 1 and 4. Reports
# tokens per step, tree nodes per step and the speedup, and writes docs/drafters.csv.
#
# usage: tools/drafter_table.sh [BUILD_DIR]      (default: build; redraft-demo must be built)
# environment: TOKENS (per request, default 160), REPEATS (runs per cell, default 3), OUT (default
# docs), TARGET, DRAFT (checkpoint directories).
#
# The drafters (docs/lookup.md):
#   head    the distilled ReDrafter head, W 1, L 6 (the best greedy cell of docs/results.md)
#   lookup  prompt lookup / n-gram (n = 3..1), 1 candidate of up to 7 tokens (L 8)
#   hybrid  head (1 beam of 5 tokens) + lookup (1 candidate of up to 7), one tree (L 8), each
#           lookup candidates cut after the depths where they were right less than 30% of the time
#           (--min-acceptance 0.3)
# Each cell runs redraft-demo REPEATS times (sampling: seeds 1..REPEATS) over the four KJV prompts
# (requests cycle through them); tokens and nodes per step are means, the speedup is the median of
# the per-run ratios (each run times plain and speculative decoding back to back). Run it on an
# otherwise idle machine: the speedups are wall-clock ratios.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build}"
demo="$build/examples/redraft-demo"
out="${OUT:-$root/docs}"
tokens="${TOKENS:-160}"
repeats="${REPEATS:-3}"
target="${TARGET:-$root/data/models/kjv-target}"
draft="${DRAFT:-$root/data/draft_heads/kjv}"

[[ -x "$demo" ]] || { echo "drafter_table.sh: $demo not found (cmake --build $build --target redraft-demo)" >&2; exit 1; }
mkdir -p "$out"
csv="$out/drafters.csv"
echo "mode,batch,drafter,tokens_per_step,nodes_per_step,speedup" > "$csv"

prompts=(--prompt "And God said unto Moses, " --prompt "Blessed are the poor in spirit: "
         --prompt "The LORD is my shepherd; " --prompt "And it came to pass, when the king ")
drafter_args() {
  case "$1" in
    head) echo "--drafter head --width 1 --length 6" ;;
    lookup) echo "--drafter lookup --width 1 --length 8" ;;
    hybrid) echo "--drafter hybrid --width 1 --head-length 6 --lookup-beams 1 --length 8 --min-acceptance 0.3" ;;
  esac
}

for mode in greedy sampling; do
  for batch in 1 4; do
    for drafter in lookup head hybrid; do
      runs=""
      for ((r = 1; r <= repeats; ++r)); do
        # shellcheck disable=SC2207
        args=(--target "$target" --draft "$draft" --batch "$batch" --max-tokens "$tokens" --quiet
              "${prompts[@]}" $(drafter_args "$drafter"))
        [[ $mode == sampling ]] && args+=(--temperature 1 --verifier lossless --seed "$r")
        text="$("$demo" "${args[@]}")"
        runs+="$(awk '
          /^tokens per step:/ { tps = $4 }
          /^nodes per step:/ { nps = $4 }
          /^speedup:/ { sp = $2; sub(/x$/, "", sp) }
          END { print tps, nps, sp }' <<< "$text")"$'\n'
      done
      printf '%s' "$runs" | sort -k3,3g | awk -v mode="$mode" -v b="$batch" -v d="$drafter" '
        { tps += $1; nps += $2; sp[NR] = $3 }
        END { printf "%s,%d,%s,%.2f,%.2f,%.2f\n", mode, b, d, tps / NR, nps / NR, sp[int((NR + 1) / 2)] }' |
        tee -a "$csv"
    done
  done
done
