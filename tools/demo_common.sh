# demo_common.sh: what tools/policy_table.sh and tools/demo_ab.sh share, sourced by both (not run
# on its own): one timed run of redraft-demo on the KJV pair, and the awk functions their
# summaries use for medians and their 95% intervals.
#
# The caller sets: target, draft, tokens, prompt, prompts_file, demo_repeat (see either script's
# header).

# One run: demo_run DEMO MODE BATCH RUN [FLAGS...] prints "tokens_per_step speedup shapes each"
# (shapes: W x L:steps items joined by '|'; each: the speedup of every repeat inside the run, in
# order, joined by '|'). MODE greedy or sampling (T = 1, lossless verifier); a sampling run RUN
# uses the seeds (RUN - 1) demo_repeat + 1 .. RUN demo_repeat, so runs with the same RUN decode
# the same text whatever their flags.
demo_run() {
  local demo=$1 mode=$2 batch=$3 run=$4
  shift 4
  local args=(--target "$target" --draft "$draft" --batch "$batch" --max-tokens "$tokens" --repeat "$demo_repeat" --quiet "$@")
  # PROMPTS_FILE: each repeat decodes the next batch of the file's prompts (redraft-demo
  # --prompts-file); else every repeat decodes PROMPT.
  if [[ -n "${prompts_file:-}" ]]; then args+=(--prompts-file "$prompts_file"); else args+=(--prompt "$prompt"); fi
  [[ $mode == sampling ]] && args+=(--temperature 1 --verifier lossless --seed "$(( (run - 1) * demo_repeat + 1 ))")
  local text
  text="$("$demo" "${args[@]}")"
  awk '
    /^tokens per step:/ { tps = $4 }
    /^shapes/ { s = ""; for (i = 6; i <= NF; ++i) s = s (s == "" ? "" : "|") $i }
    /^speedup:/ {
      sp = $2; sub(/x$/, "", sp); e = ""; on = 0
      for (i = 3; i <= NF; ++i) { if (on) { v = $i; sub(/\)$/, "", v); e = e (e == "" ? "" : "|") v } if ($i == "each:") on = 1 }
      if (e == "") e = sp
    }
    END { print tps, sp, s, e }' <<< "$text"
}

# awk functions, prepended to an awk program. sorted_median(a, m): sorts a[1..m] in place and
# returns its median. median_ci(a, m): after sorted_median, the distribution-free 95% interval of
# the median, "[lo, hi]" (order statistics k and m + 1 - k, k the largest with P(Bin(m, 1/2) < k)
# <= 0.025; "" for fewer than 6 values, where no such k exists). No apostrophes inside: it is one
# single-quoted shell string.
# shellcheck disable=SC2034  # used by the scripts that source this file
awk_lib='
  function sorted_median(a, m,   i, j, t) {
    for (i = 1; i <= m; ++i) for (j = i + 1; j <= m; ++j) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  function median_ci(a, m,   k, term, cdf) {
    term = 0.5 ^ m; cdf = 0; k = 0
    while (k < m && cdf + term <= 0.025) { cdf += term; ++k; term = term * (m - k + 1) / k }
    return k >= 1 ? sprintf("[%.3f, %.3f]", a[k], a[m + 1 - k]) : ""
  }
'
