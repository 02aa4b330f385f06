#!/bin/bash
# Benchmark: what adaptive sampling (issue 15) costs per request, and how
# many Redis commands per second it sends whatever the request rate.
# Run by hand (not in CI), loopback only:
#   bench/adaptive_instructions.sh [BUILD_DIR] [REQUESTS] [CONNECTIONS]
# (defaults: _build, 20000, 8). nginx upstream, local redis-server, as
# bench/span_instructions.sh. Two configurations with the same traced share,
# so that spans cost the same in both:
#   policy    [sampling] default_probability = 0.01;
#   adaptive  adaptive = true, calculation_interval = 1s, the probability
#             pinned at 0.01 (min_sampling_probability = 0.01 and a target
#             every operation exceeds), so the difference is the counting
#             and the adaptive layer's lookup, not the spans.
# Per configuration:
#   1. callgrind: tracebridge (1 worker) under valgrind, 1000 warm-up
#      requests, counters zeroed, REQUESTS more over CONNECTIONS keep-alive
#      connections, dumped: Ir / REQUESTS (all threads, user space), and
#      the worker thread's alone (the control thread's per-interval work,
#      spread over the few hundred requests/s valgrind manages, is most of
#      the difference);
#   2. natively, wrk for SECS seconds (5) at full speed and then at about a
#      tenth of it (wrk -R is not in Debian's wrk: fewer connections and a
#      delay script instead), Redis' CONFIG RESETSTAT before each: requests/s
#      and the adaptive commands per second (HINCRBY, PEXPIRE, EVAL,
#      HGETALL, SET, PUBLISH and the policy source's GET).
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_init tb-adaptive-bench 1 "${1:-$top/_build}"
nreq=${2:-20000}
nconn=${3:-8}
secs=${SECS:-5}

UP=$(port); RP=$(port); TP=$(port); AP=$(port)
tb_conf "$work/policy.conf" "$TP" "$AP" true "[tracing]
project = bench
[sampling]
default_probability = 0.01"
tb_conf "$work/adaptive.conf" "$TP" "$AP" true "[tracing]
project = bench
[sampling]
policy_redis_key = bench:policy
policy_channel = bench:policy:changed
adaptive = true
calculation_interval = 1s
target_traces_per_second = 0.001
initial_sampling_probability = 0.01
min_sampling_probability = 0.01
min_traces_per_second = 0"

start_redis 1 "$RP" "$work" --daemonize no --loglevel warning
start_upstream "$UP"
sleep 0.5
get_v3 "$UP"
need_200 upstream

# a tenth of the rate: every request waits ~ 9x its own service time
cat > "$work/slow.lua" <<'LUA'
local last = 0
function delay() return last end
function response(status, headers, body) last = 1 end
LUA

adaptive_cmds() {	# commands of adaptive sampling since the last RESETSTAT
	redis-cli -p "$RP" info commandstats | tr -d '\r' | awk -F'[=,:]' '
	    /^cmdstat_(hincrby|pexpire|eval|hgetall|set|publish|get):/ { n += $3 }
	    END { print n + 0 }'
}

for mode in policy adaptive; do
	valgrind --tool=callgrind --separate-threads=yes \
		--callgrind-out-file="$work/cg.$mode" \
		"$build/tracebridge" -f -c "$work/$mode.conf" 2> "$work/vg.$mode.log" &
	pid=$!
	wait_tb "$pid"
	/usr/bin/python3 "$top/bench/fixed_client.py" "$TP" 1000 "$nconn"
	sleep 2		# adaptive: a computation or two, the probability pinned
	callgrind_control -z "$pid" > /dev/null 2>&1
	/usr/bin/python3 "$top/bench/fixed_client.py" "$TP" "$nreq" "$nconn"
	callgrind_control -d "$mode" "$pid" > /dev/null 2>&1
	stop_tb "$pid"
	# one dump per thread: all of them, and the busiest (the worker)
	for f in "$work/cg.$mode".*; do
		awk '/^(summary|totals):/ {print $2; exit}' "$f"
	done > "$work/ir.$mode"
	echo "$mode ir $(awk '{ s += $1 } END { print s }' "$work/ir.$mode")" >> "$work/results"
	echo "$mode irw $(sort -n "$work/ir.$mode" | tail -1)" >> "$work/results"

	taskset -c 0 "$build/tracebridge" -f -c "$work/$mode.conf" 2> "$work/tb.$mode.log" &
	pid=$!
	wait_tb "$pid"
	sleep 2
	for rate in full tenth; do
		redis-cli -p "$RP" config resetstat > /dev/null
		if [ $rate = full ]; then
			out=$(taskset -c 1 wrk -t1 -c32 -d"${secs}s" "http://127.0.0.1:$TP/v3")
		else
			out=$(taskset -c 1 wrk -t1 -c2 -d"${secs}s" -s "$work/slow.lua" "http://127.0.0.1:$TP/v3")
		fi
		rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec/ {print $2}')
		echo "$mode rps_$rate $rps" >> "$work/results"
		echo "$mode cmds_$rate $(adaptive_cmds)" >> "$work/results"
	done
	stop_tb "$pid"
done

/usr/bin/python3 - "$work/results" "$nreq" "$secs" <<'PY'
import sys
n, secs = float(sys.argv[2]), float(sys.argv[3])
v = {}
for line in open(sys.argv[1]):
    m, k, x = line.split()
    v[(m, k)] = float(x)
for m in ("policy", "adaptive"):
    print("%-8s %8.0f Ir/request; %8.0f req/s: %6.1f Redis cmds/s; "
          "%7.0f req/s: %6.1f Redis cmds/s" % (
              m, v[(m, "ir")] / n, v[(m, "rps_full")], v[(m, "cmds_full")] / secs,
              v[(m, "rps_tenth")], v[(m, "cmds_tenth")] / secs))
print("adaptive - policy: %+.0f Ir/request, of which the worker thread "
      "%+.0f (%.0f -> %.0f)" % (
          (v[("adaptive", "ir")] - v[("policy", "ir")]) / n,
          (v[("adaptive", "irw")] - v[("policy", "irw")]) / n,
          v[("policy", "irw")] / n, v[("adaptive", "irw")] / n))
PY
