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
build=${1:-$top/_build}
rounds=${2:-5}
secs=${3:-10}
conns=${CONNS:-32}
work=$(mktemp -d /tmp/tb-sbench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.2; rm -rf "$work"' EXIT

port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
UP=$(port); RD=$(port); ON=$(port); ONADM=$(port); OFF=$(port); OFFADM=$(port)
mkdir -p "$work/www" "$work/redis"
# mktemp makes the directory 0700: nginx's workers (nobody when started as
# root) could not read the static file and every answer would be a 403
chmod 755 "$work" "$work/www"
printf '{"version": {"id": "v3.14", "status": "stable"}}\n' > "$work/www/v3"
printf '{"service_strategies": [], "default_strategy": {"type": "probabilistic", "param": 0.01}}\n' \
	> "$work/policy.json"

cat > "$work/upstream.conf" <<NGX
daemon off; worker_processes 1; pid $work/upstream.pid; error_log $work/upstream.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/b; proxy_temp_path $work/p;
  fastcgi_temp_path $work/f; uwsgi_temp_path $work/u; scgi_temp_path $work/s;
  server { listen 127.0.0.1:$UP; root $work/www; default_type application/json; } }
NGX

tb_conf() {	# $1 name, $2 port, $3 admin port, $4 enabled
	cat > "$work/$1.conf" <<CONF
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
connection_string = redis://127.0.0.1:$RD
[sampling]
policy_file = $work/policy.json
CONF
}
tb_conf on "$ON" "$ONADM" true
tb_conf off "$OFF" "$OFFADM" false

taskset -c 1 redis-server --port "$RD" --bind 127.0.0.1 --dir "$work/redis" \
	--save '' --appendonly no > "$work/redis.log" 2>&1 &
taskset -c 1 /usr/sbin/nginx -c "$work/upstream.conf" -p "$work" &
taskset -c 0 "$build/tracebridge" -f -c "$work/on.conf" 2> "$work/on.log" &
ONPID=$!
taskset -c 0 "$build/tracebridge" -f -c "$work/off.conf" 2> "$work/off.log" &
OFFPID=$!
sleep 1

cpu() {	# $1 pid -> utime + stime in clock ticks
	awk '{print $14 + $15}' "/proc/$1/stat"
}
run() {	# $1 port, $2 pid -> "rps p99_ms cpu_us_per_request"
	c0=$(cpu "$2")
	taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$1/v3" > "$work/wrk.out"
	rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' "$work/wrk.out")
	errs=$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out")
	[ -z "$errs" ] || echo "warning (port $1): $errs" >&2
	# CPU the proxy spent per request: less disturbed than req/s when other
	# work shares the machine
	reqs=$(awk '/requests in/ {print $1}' "$work/wrk.out")
	us=$(awk -v a="$c0" -v b="$(cpu "$2")" -v n="$reqs" -v hz="$(getconf CLK_TCK)" \
		'BEGIN {printf "%.2f", (b - a) * 1e6 / hz / n}')
	echo "$rps $p99 $us"
}
for p in "$ON" "$OFF"; do	# both must answer 200 before anything is measured
	code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/v3")
	[ "$code" = 200 ] || { echo "proxy on port $p answered $code, not 200" >&2; exit 1; }
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
/usr/bin/python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for name in ("off", "on"):
    r = [float(x[1]) for x in rows if x[0] == name]
    p = [float(x[2]) for x in rows if x[0] == name]
    u = [float(x[3]) for x in rows if x[0] == name]
    med[name] = statistics.median(r)
    med[name + "_us"] = statistics.median(u)
    print("tracing %-4s median %10.0f req/s   p99 %7.3f ms   %6.2f us CPU/request"
          % (name, med[name], statistics.median(p), med[name + "_us"]))
ratio = med["on"] / med["off"]
print("ratio on/off %.3f (target >= 0.97)%s" % (ratio, "" if ratio >= 0.97 else "  BELOW TARGET"))
print("CPU per request off/on %.3f (the same ratio by CPU cost)" % (med["off_us"] / med["on_us"]))
PY
# what the traced proxy decided and stored
curl -s "http://127.0.0.1:$ONADM/metrics" | grep -E '^tracebridge_sampling_decisions_total' || true
echo "traces in redis: $(redis-cli -p "$RD" --scan --pattern 'osprofiler_opt:*' | wc -l)"
grep VmHWM /proc/$ONPID/status /proc/$OFFPID/status
