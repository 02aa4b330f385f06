#!/bin/bash
# Benchmark: OTLP export of edge spans (issue 14). Run by hand (not in CI),
# loopback only, bounded:
#   bench/otlp_export.sh [BUILD_DIR] [ROUNDS] [SECONDS]
# 1. Spans per second one worker loop exports (bench/bench_otlp: encode,
#    queue, batch of 512, gzip, HTTP/1.1 keep-alive POST) into a receiver
#    that discards (tests/integration/node/otlp_receiver.js --discard, CPU 1),
#    protobuf+gzip, protobuf, JSON+gzip, JSON; bench_otlp on CPU 0.
# 2. Proxy requests/s with every request traced and exported (protobuf+gzip,
#    [profiler] connection_string = otlp://, no Redis) against tracing off
#    ([profiler] enabled = false), one worker each on CPU 0, nginx upstream,
#    wrk and the receiver on CPU 1; rounds interleaved, medians, ratio
#    (target >= 0.9) and tracebridge's CPU per request. For scale, a third
#    instance traces every request into Redis instead (redis-server, CPU 1):
#    what tracing itself costs, export or not.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_init tb-otlp-bench 3 "$@"
make -C "$build" bench/bench_otlp >/dev/null

RECV=$(port)
( cd "$top/tests/integration/node" &&
  exec taskset -c 1 node otlp_receiver.js --discard --port "$RECV" ) > "$work/recv.out" &
sleep 1

echo "== spans/s, one worker, 200000 spans, into a discarding receiver"
for enc in "protobuf gzip" "protobuf none" "json gzip" "json none"; do
	for i in $(seq "$rounds"); do
		taskset -c 0 "$build/bench/bench_otlp" "$RECV" $enc 200000 | head -1
	done
done | tee "$work/sink"

UP=$(port); RP=$(port)
start_upstream "$UP"
start_redis 1 "$RP" "$work/redis" --maxmemory 512mb --maxmemory-policy allkeys-random
P_OFF=$(port); A_OFF=$(port); P_ON=$(port); A_ON=$(port); P_RD=$(port); A_RD=$(port)
tb_conf "$work/off.conf" "$P_OFF" "$A_OFF" false
span_conf "$work/redis.conf" "$P_RD" "$A_RD" true
tb_conf "$work/on.conf" "$P_ON" "$A_ON" "" "service = bench
[profiler]
enabled = true
hmac_keys = SECRET_KEY
connection_string = otlp://127.0.0.1:$RECV
[tracing]
sample_new = true
project = bench
host = bench-host
[sampling]
max_traces_per_second = 0
[otlp]
flush_interval = 0.2"
start_tb "$work/off.conf" "$work/off.err"; PID_OFF=$!
start_tb "$work/on.conf" "$work/on.err"; PID_ON=$!
start_tb "$work/redis.conf" "$work/redis.err"; PID_RD=$!
sleep 1
check_200 off "$P_OFF"
check_200 exported "$P_ON"
check_200 redis "$P_RD"

run() {	# $1 port $2 pid -> "rps p99 non2xx cpu_us"
	c0=$(cpu_ticks "$2")
	wrk_run "$1"
	c1=$(cpu_ticks "$2")
	echo "$rps $p99 ${non2xx:-0} $(cpu_us_per_request "$c0" "$c1" "$nreq")"
}
for i in $(seq "$rounds"); do
	echo "off $(run "$P_OFF" "$PID_OFF")" >> "$work/results"
	echo "exported $(run "$P_ON" "$PID_ON")" >> "$work/results"
	echo "redis $(run "$P_RD" "$PID_RD")" >> "$work/results"
done
echo "== proxy requests/s"
cat "$work/results"
summarize "$work/results" <<'PY'
r = {}
for name in ("off", "exported", "redis"):
    r[name] = (med(name, 1), med(name, 4))
    print("%-9s median %9.0f req/s  p99 %7.3f ms  tracebridge CPU %6.2f us/request" % (
        name, r[name][0], med(name, 2), r[name][1]))
ratio, cratio = r["exported"][0] / r["off"][0], r["off"][1] / r["exported"][1]
print("ratio exported / off: req/s %.3f, CPU-per-request %.3f (target >= 0.9: %s)" % (
    ratio, cratio, "ok" if ratio >= 0.9 else "ok by CPU" if cratio >= 0.9 else "MISSED"))
print("ratio redis / off: req/s %.3f, CPU-per-request %.3f (tracing into Redis, for scale)" % (
    r["redis"][0] / r["off"][0], r["off"][1] / r["redis"][1]))
PY
echo "exported: $(curl -s "http://127.0.0.1:$A_ON/metrics" | grep -E '^tracebridge_otlp_(spans_exported_total|spans_dropped_total\{reason="queue_full"\}|export_requests_total\{outcome="success"\}) ' | tr '\n' ' ')"
