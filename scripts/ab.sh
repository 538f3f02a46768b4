#!/usr/bin/env bash
# An A/B of two walleti builds on this machine: runs `scripts/bench.sh` for one run kind,
# alternating the builds (A B, then B A, …, so a drift of the machine's speed falls on both),
# and prints each run and, per build, the mean and spread of transfers/s, p99 and CPU per
# transfer. This machine's speed swings by ±10 % between back-to-back runs of one build; a
# change smaller than that needs several pairs, and the CPU per transfer is the steadier figure.
#
#   scripts/ab.sh A_BINARY B_BINARY [pairs] [seconds] [run]
#
# pairs: default 3; seconds: default 12; run: one of bench.sh's runs (pg_uniform, pg_hot,
# sqlite_uniform), default pg_uniform. BENCH_USERS and BENCH_SERVER_ENV pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { sed -n '2,11p' "$0"; exit 2; }
a=$1 b=$2 pairs=${3:-3} seconds=${4:-12} run=${5:-pg_uniform}
case "$run" in pg_uniform | pg_hot | sqlite_uniform) ;; *) echo "unknown run $run"; exit 2 ;; esac
results=$(mktemp)
trap 'rm -f "$results"' EXIT

one() { # label binary
  local row
  row=$(BENCH_RUNS=$run scripts/bench.sh "$seconds" "$2" 2>/dev/null | grep '^| walleti ' || true)
  [ -n "$row" ] || { echo "$1: the run failed (try: BENCH_RUNS=$run scripts/bench.sh $seconds $2)"; exit 1; }
  # | name | tps | ratio | p50 | p99 | server µs | PostgreSQL µs | load generator µs | xacts | RSS |
  awk -F'|' -v label="$1" '{ gsub(/ /, ""); printf "%s %s %s %s %s\n", label, $3, $6, $7, $8 }' \
    <<<"$row" | tee -a "$results"
}

echo "build transfers/s p99_ms server_µs postgres_µs ($run, $seconds s, A=$a B=$b)"
for pair in $(seq 1 "$pairs"); do
  if [ $((pair % 2)) -eq 1 ]; then one A "$a"; one B "$b"; else one B "$b"; one A "$a"; fi
done

awk '
  function spread(sum, squares, n) { return n > 1 ? sqrt((squares - sum * sum / n) / (n - 1)) : 0 }
  {
    n[$1]++
    for (i = 2; i <= 5; i++) if ($i != "-") { s[$1, i] += $i; q[$1, i] += $i * $i; c[$1, i]++ }
  }
  END {
    split("transfers/s p99_ms server_µs postgres_µs", names, " ")
    for (i = 2; i <= 5; i++) {
      line = sprintf("%-12s", names[i - 1])
      for (build = 1; build <= 2; build++) {
        k = build == 1 ? "A" : "B"
        if (c[k, i] > 0)
          line = line sprintf("  %s %.1f ± %.1f", k, s[k, i] / c[k, i], spread(s[k, i], q[k, i], c[k, i]))
        else
          line = line sprintf("  %s -", k)
      }
      if (c["A", i] > 0 && c["B", i] > 0 && s["A", i] > 0)
        line = line sprintf("  B/A %.3f", (s["B", i] / c["B", i]) / (s["A", i] / c["A", i]))
      print line
    }
  }' "$results"
