#!/bin/bash
# Benchmark: the cost of recording every request's edge span into Redis.
# Run by hand (not in CI), loopback only:
#   bench/span_overhead.sh [BUILD_DIR] [ROUNDS] [SECONDS]
# Two tracebridge instances (1 worker each, pinned to CPU 0) in front of the
# same upstream (nginx answering a small static JSON, CPU 1; wrk also on
# CPU 1, like bench/proxy_vs_nginx.sh):
#   "traced": [profiler] enabled, every request sampled (sample_new = true,
#             max_traces_per_second = 0 = unlimited) and its span pushed to a
#             local redis-server (CPU 1);
#   "plain":  [profiler] enabled = false.
# Rounds are interleaved; medians of requests/s and p99 latency, the ratio
# traced/plain (target >= 0.85) and the span accounting are printed. Also the
# CPU time tracebridge spent per request (utime+stime / requests): on a
# 2-CPU machine CPU 1 (wrk, nginx, redis) is the bottleneck, so the req/s
# ratio partly measures Redis' CPU there; the CPU ratio is tracebridge's own.
# Every traced round starts from an empty Redis (FLUSHALL once the previous
# round's spans are in): otherwise round N would measure a Redis that holds
# N-1 rounds of spans (~1.3 KB each, 1.7 GB after five rounds), growing its
# hash table, and the result would depend on the number of rounds. Redis'
# own CPU per span is printed too.
# REDIS_CPU=0 puts redis-server on tracebridge's CPU instead; TB_CPU_QUOTA=50
# caps each tracebridge at half a CPU (see bench/lib.sh), so that it and not
# the shared CPU 1 is the bottleneck in both modes.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_init tb-span-bench 5 "$@"

UP=$(port); RP=$(port); TT=$(port); TA=$(port); PT=$(port); PA=$(port)
span_conf "$work/traced.conf" "$TT" "$TA" true
span_conf "$work/plain.conf" "$PT" "$PA" false

start_redis "${REDIS_CPU:-1}" "$RP" "$work" --daemonize no --loglevel warning
RPID=$!
start_upstream "$UP"
start_tb "$work/traced.conf" "$work/traced.log"
TPID=$!
start_tb "$work/plain.conf" "$work/plain.log"
PPID_=$!
sleep 1
# not the traced instance: a span of its own would upset the accounting below
check_200 upstream "$UP"
check_200 plain "$PT"

run() {	# $1 port, $2 pid -> "rps p99_ms requests cpu_ticks redis_cpu_ticks"
	local r0
	r0=$(cpu_ticks "$RPID")
	c0=$(cpu_ticks "$2")
	wrk_run "$1"
	echo "$rps $p99 $nreq $(( $(cpu_ticks "$2") - c0 )) $(( $(cpu_ticks "$RPID") - r0 ))"
}
keys=0
drain() {	# wait until the traced instance's buffer is empty, count and drop the traces
	for _ in $(seq 50); do
		curl -s "http://127.0.0.1:$TA/metrics" | grep -qx 'tracebridge_span_buffer_bytes 0' && break
		sleep 0.1
	done
	keys=$(( keys + $(redis-cli -p "$RP" dbsize) ))
	redis-cli -p "$RP" flushall >/dev/null
}
for i in $(seq "$rounds"); do
	echo "plain $(run "$PT" "$PPID_")" >> "$work/results"
	drain
	echo "traced $(run "$TT" "$TPID")" >> "$work/results"
done
cat "$work/results"
drain
curl -s "http://127.0.0.1:$TA/metrics" | grep -E '^tracebridge_(spans_|span_buffer|redis_connected)' > "$work/metrics" || true
summarize "$work/results" "$work/metrics" "$keys" <<'PY'
rps, cpu = {}, {}
hz = 100.0
for name in ("plain", "traced"):
    c = [float(x[4]) / hz * 1e6 / float(x[3]) for x in rows if x[0] == name]
    rps[name], cpu[name] = med(name, 1), statistics.median(c)
    print("%-7s median %10.0f req/s   p99 %7.3f ms   tracebridge CPU %5.1f us/req"
          % (name, rps[name], med(name, 2), cpu[name]))
print("ratio traced/plain: %.3f req/s (target >= 0.85); %.3f by tracebridge CPU per request"
      % (rps["traced"] / rps["plain"], cpu["plain"] / cpu["traced"]))
rc = [float(x[5]) / hz * 1e6 / float(x[3]) for x in rows if x[0] == "traced"]
print("redis-server CPU per traced request (span): %.1f us" % statistics.median(rc))
m = dict(l.rsplit(" ", 1) for l in open(sys.argv[2]).read().splitlines())
sent = sum(int(x[3]) for x in rows if x[0] == "traced")
rec = int(m.get("tracebridge_spans_recorded_total", "0"))
drop = sum(int(v) for k, v in m.items() if k.startswith("tracebridge_spans_dropped_total"))
print("traced requests completed (wrk): %d; spans recorded %d, dropped %d, "
      "buffered bytes %s; traces in Redis: %s"
      % (sent, rec, drop, m.get("tracebridge_span_buffer_bytes"), sys.argv[3]))
PY
grep VmHWM /proc/$TPID/status
