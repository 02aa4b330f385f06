#!/bin/bash
# Benchmark: what tracing with a 1% probabilistic sampling policy costs.
# Run by hand (not in CI): bench/sampling_overhead.sh [BUILD_DIR] [ROUNDS] [SECONDS]
# Two tracebridge processes, 1 worker each, pinned to CPU 0:
#   on:  [profiler] enabled = true, policy file {"default_strategy": 1%},
#        spans into a local redis-server (the 1% that are sampled)
#   off: [profiler] enabled = false (a plain proxy)
# The upstream (nginx answering a small static JSON), redis-server and wrk
# share CPU 1. wrk: 1 thread, $CONNS connections (32), rounds interleaved;
# medians of requests/s, p99 latency and the proxy's CPU time per request,
# then the ratio on/off (target >= 0.97).
# Loopback only; everything started here is stopped on exit.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_init tb-sbench 5 "$@"

UP=$(port); RP=$(port); ON=$(port); ONADM=$(port); OFF=$(port); OFFADM=$(port)
printf '{"service_strategies": [], "default_strategy": {"type": "probabilistic", "param": 0.01}}\n' \
	> "$work/policy.json"
tb_conf "$work/on.conf" "$ON" "$ONADM" true "[sampling]
policy_file = $work/policy.json"
tb_conf "$work/off.conf" "$OFF" "$OFFADM" false "[sampling]
policy_file = $work/policy.json"

start_redis 1 "$RP" "$work/redis"
start_upstream "$UP"
start_tb "$work/on.conf" "$work/on.log"
ONPID=$!
start_tb "$work/off.conf" "$work/off.log"
OFFPID=$!
sleep 1

run() {	# $1 port, $2 pid -> "rps p99_ms cpu_us_per_request"
	c0=$(cpu_ticks "$2")
	wrk_run "$1"
	errs=$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out")
	[ -z "$errs" ] || echo "warning (port $1): $errs" >&2
	# CPU the proxy spent per request: less disturbed than req/s when other
	# work shares the machine
	echo "$rps $p99 $(cpu_us_per_request "$c0" "$(cpu_ticks "$2")" "$nreq")"
}
for p in "$ON" "$OFF"; do	# both must answer 200 before anything is measured
	check_200 "proxy on port $p" "$p"
done
for i in $(seq "$rounds"); do
	if [ $((i % 2)) = 1 ]; then
		echo "off $(run "$OFF" "$OFFPID")" >> "$work/results"
		echo "on $(run "$ON" "$ONPID")" >> "$work/results"
	else
		echo "on $(run "$ON" "$ONPID")" >> "$work/results"
		echo "off $(run "$OFF" "$OFFPID")" >> "$work/results"
	fi
done
cat "$work/results"
summarize "$work/results" <<'PY'
rps = {}
for name in ("off", "on"):
    rps[name] = med(name, 1)
    rps[name + "_us"] = med(name, 3)
    print("tracing %-4s median %10.0f req/s   p99 %7.3f ms   %6.2f us CPU/request"
          % (name, rps[name], med(name, 2), rps[name + "_us"]))
ratio = rps["on"] / rps["off"]
print("ratio on/off %.3f (target >= 0.97)%s" % (ratio, "" if ratio >= 0.97 else "  BELOW TARGET"))
print("CPU per request off/on %.3f (the same ratio by CPU cost)" % (rps["off_us"] / rps["on_us"]))
PY
# what the traced proxy decided and stored
curl -s "http://127.0.0.1:$ONADM/metrics" | grep -E '^tracebridge_sampling_decisions_total' || true
echo "traces in redis: $(redis-cli -p "$RP" --scan --pattern 'osprofiler_opt:*' | wc -l)"
grep VmHWM /proc/$ONPID/status /proc/$OFFPID/status
