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
# REDIS_CPU=0 puts redis-server on tracebridge's CPU instead.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/_build}
rounds=${2:-5}
secs=${3:-10}
conns=${CONNS:-32}
work=$(mktemp -d /tmp/tb-span-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.2; rm -rf "$work"' EXIT

port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
UP=$(port); RP=$(port); TT=$(port); TA=$(port); PT=$(port); PA=$(port)
mkdir -p "$work/www"; printf '{"version": {"id": "v3.14", "status": "stable"}}\n' > "$work/www/v3"

cat > "$work/upstream.conf" <<NGX
daemon off; worker_processes 1; pid $work/up.pid; error_log $work/up.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/b; proxy_temp_path $work/p;
  fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$UP; root $work/www; default_type application/json; } }
NGX

tb_conf() {	# $1 file, $2 listen port, $3 admin port, $4 enabled
	cat > "$1" <<CONF
[DEFAULT]
workers = 1
log_level = warning
[admin]
listen = 127.0.0.1:$3
[listener:bench]
listen = 127.0.0.1:$2
upstream = http://127.0.0.1:$UP
service = bench
[profiler]
enabled = $4
hmac_keys = SECRET_KEY
connection_string = redis://127.0.0.1:$RP
[tracing]
sample_new = true
project = bench
host = bench-host
[sampling]
max_traces_per_second = 0
CONF
}
tb_conf "$work/traced.conf" "$TT" "$TA" true
tb_conf "$work/plain.conf" "$PT" "$PA" false

taskset -c "${REDIS_CPU:-1}" redis-server --port "$RP" --bind 127.0.0.1 --dir "$work" \
	--save '' --appendonly no --daemonize no --loglevel warning > "$work/redis.log" 2>&1 &
taskset -c 1 /usr/sbin/nginx -c "$work/upstream.conf" -p "$work" &
taskset -c 0 "$build/tracebridge" -f -c "$work/traced.conf" 2> "$work/traced.log" &
TPID=$!
taskset -c 0 "$build/tracebridge" -f -c "$work/plain.conf" 2> "$work/plain.log" &
PPID_=$!
sleep 1
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

run() {	# $1 port, $2 pid -> "rps p99_ms requests cpu_ticks"
	c0=$(cputicks "$2")
	taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$1/v3" > "$work/wrk.out"
	rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
	n=$(awk '/requests in/ {print $1}' "$work/wrk.out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' "$work/wrk.out")
	echo "$rps $p99 $n $(( $(cputicks "$2") - c0 ))"
}
for i in $(seq "$rounds"); do
	echo "plain $(run "$PT" "$PPID_")" >> "$work/results"
	echo "traced $(run "$TT" "$TPID")" >> "$work/results"
done
cat "$work/results"
sleep 1	# let the traced instance's span buffer drain
curl -s "http://127.0.0.1:$TA/metrics" | grep -E '^tracebridge_(spans_|span_buffer|redis_connected)' > "$work/metrics" || true
keys=$(redis-cli -p "$RP" dbsize)
/usr/bin/python3 - "$work/results" "$work/metrics" "$keys" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med, cpu = {}, {}
hz = 100.0
for name in ("plain", "traced"):
    r = [float(x[1]) for x in rows if x[0] == name]
    p = [float(x[2]) for x in rows if x[0] == name]
    c = [float(x[4]) / hz * 1e6 / float(x[3]) for x in rows if x[0] == name]
    med[name], cpu[name] = statistics.median(r), statistics.median(c)
    print("%-7s median %10.0f req/s   p99 %7.3f ms   tracebridge CPU %5.1f us/req"
          % (name, med[name], statistics.median(p), cpu[name]))
print("ratio traced/plain: %.3f req/s (target >= 0.85); %.3f by tracebridge CPU per request"
      % (med["traced"] / med["plain"], cpu["plain"] / cpu["traced"]))
m = dict(l.rsplit(" ", 1) for l in open(sys.argv[2]).read().splitlines())
sent = sum(int(x[3]) for x in rows if x[0] == "traced")
rec = int(m.get("tracebridge_spans_recorded_total", "0"))
drop = sum(int(v) for k, v in m.items() if k.startswith("tracebridge_spans_dropped_total"))
print("traced requests completed (wrk): %d; spans recorded %d, dropped %d, "
      "buffered bytes %s; traces in Redis: %s"
      % (sent, rec, drop, m.get("tracebridge_span_buffer_bytes"), sys.argv[3]))
PY
grep VmHWM /proc/$TPID/status
