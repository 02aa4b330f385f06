#!/bin/bash
# Benchmark: spans per second one worker's Redis sink sustains into one local
# Redis (bench/bench_sink), beside redis-benchmark's LPUSH ceiling on the same
# machine. Run by hand (not in CI), loopback only:
#   bench/sink_ceiling.sh [BUILD_DIR] [ROUNDS] [SPANS]
# Layout: redis-server on CPU 1, the client (bench_sink or redis-benchmark)
# on CPU 0. Each round starts from an empty Redis (FLUSHALL) and pushes the
# same number of list elements per client:
#   sink      bench_sink: SPANS spans, one LPUSH of two ~650-byte notifications each
#   lpush-3   redis-benchmark -P 64 -t lpush: SPANS LPUSHes of 3-byte values
#   lpush-N   the same with -d N, N = the bytes one span's LPUSH carries
#   lpush-1c  the sink's own shape: one connection (-c 1), pipelined (-P 64),
#             LPUSH of two values of half of N each to a 51-byte key
#   sweep     once, after the rounds: redis-benchmark -P 64 -t lpush with
#             values of 3 to 2 x N bytes, LPUSH/s and value MB/s, which shows
#             whether Redis is bound by commands or by bytes on this machine
# and records Redis' own CPU use during it (utime+stime from /proc), which
# says who the bottleneck was: at ~100 % it is Redis, not the client.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_init tb-sink-bench 3 "${1:-}" "${2:-}"
spans=${3:-300000}
make -C "$build" bench/bench_sink >/dev/null

RP=$(port)
start_redis 1 "$RP" "$work" --daemonize no --loglevel warning
RPID=$!
for _ in $(seq 50); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done
hz=$(getconf CLK_TCK)

measure() {	# $1 label, then the client command: "label ops_per_s redis_cpu_percent"
	local label=$1 t0 t1 c0 c1 out rate
	shift
	redis-cli -p "$RP" flushall >/dev/null
	c0=$(cpu_ticks "$RPID"); t0=$(date +%s.%N)
	out=$(taskset -c 0 "$@" 2>/dev/null | tr '\r' '\n')
	t1=$(date +%s.%N); c1=$(cpu_ticks "$RPID")
	case $label in
	sink) rate=$(printf '%s\n' "$out" | sed -n 's/.* s: \([0-9]*\) spans\/s.*/\1/p') ;;
	*) rate=$(printf '%s\n' "$out" | awk '/requests per second/ {
		for (i = 2; i <= NF; i++) if ($i == "requests") r = $(i - 1)} END {print r}') ;;
	esac
	awk -v l="$label" -v r="$rate" -v c=$((c1 - c0)) -v hz="$hz" -v t0="$t0" -v t1="$t1" \
		'BEGIN {printf "%s %s %.0f\n", l, r, 100 * c / hz / (t1 - t0)}'
}

# bytes per span's LPUSH: both notifications of bench_sink's template span
redis-cli -p "$RP" flushall >/dev/null
taskset -c 0 "$build/bench/bench_sink" "redis://127.0.0.1:$RP" 1 >/dev/null 2>&1
key=$(redis-cli -p "$RP" --scan --pattern 'osprofiler_opt:*' | head -1)
per=$(redis-cli -p "$RP" lrange "$key" 0 -1 | awk '{n += length($0)} END {print n}')
echo "one span = one LPUSH of $per bytes of notifications"

half=$(( per / 2 ))
v1=$(head -c "$half" /dev/zero | tr '\0' 'x'); v2=$(head -c $(( per - half )) /dev/zero | tr '\0' 'y')
key51="osprofiler_opt:bbbbbbbb-0000-4000-8000-000000000000"
for i in $(seq "$rounds"); do
	measure sink "$build/bench/bench_sink" "redis://127.0.0.1:$RP" "$spans" >> "$work/results"
	measure lpush-3 redis-benchmark -p "$RP" -P 64 -t lpush -n "$spans" -q >> "$work/results"
	measure lpush-N redis-benchmark -p "$RP" -P 64 -t lpush -n "$spans" -d "$per" -q >> "$work/results"
	measure lpush-1c redis-benchmark -p "$RP" -c 1 -P 64 -n "$spans" -q LPUSH "$key51" "$v1" "$v2" \
		>> "$work/results"
done
for d in 3 100 300 650 "$per" $(( 2 * per )); do
	measure "sweep-$d" redis-benchmark -p "$RP" -P 64 -t lpush -n "$spans" -d "$d" -q >> "$work/results"
done
cat "$work/results"
summarize "$work/results" <<'PY'
for name in ("sink", "lpush-3", "lpush-N", "lpush-1c"):
    print("%-8s median %10.0f /s   Redis CPU %3.0f %%" % (name, med(name, 1), med(name, 2)))
print("sink / lpush-3 (3-byte values):     %.2f (target >= 0.5)" % (med("sink", 1) / med("lpush-3", 1)))
print("sink / lpush-N (same bytes per LPUSH): %.2f" % (med("sink", 1) / med("lpush-N", 1)))
print("sink / lpush-1c (same command, one connection): %.2f" % (med("sink", 1) / med("lpush-1c", 1)))
for x in rows:
    if x[0].startswith("sweep-"):
        d = int(x[0][6:])
        print("LPUSH of %5d-byte values: %9.0f /s = %4.0f MB/s of values, Redis CPU %s %%"
              % (d, float(x[1]), float(x[1]) * d / 1e6, x[2]))
PY
