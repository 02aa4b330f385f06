#!/bin/bash
# Benchmark: tracebridge vs nginx as reverse proxies of the same upstream.
# Run by hand (not in CI): bench/proxy_vs_nginx.sh [BUILD_DIR] [ROUNDS] [SECONDS]
# Both proxies: 1 worker, upstream keep-alive on, pinned to CPU 0; the
# upstream (nginx answering a small static body) and wrk share CPU 1.
# Rounds are interleaved; medians of requests/s and p99 latency are printed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$top/_build}
rounds=${2:-5}
secs=${3:-10}
conns=${CONNS:-32}
work=$(mktemp -d /tmp/tb-bench.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null; sleep 0.2; rm -rf "$work"' EXIT

port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
UP=$(port); NG=$(port); TB=$(port); ADM=$(port)
# nginx workers run as nobody when started as root: let them read the files.
mkdir -p "$work/www"; chmod 755 "$work" "$work/www"; printf '{"version": {"id": "v3.14", "status": "stable"}}\n' > "$work/www/v3"

nginx_conf() {	# $1 name, $2 server block
	cat > "$work/$1.conf" <<NGX
daemon off; worker_processes 1; pid $work/$1.pid; error_log $work/$1.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/b-$1; proxy_temp_path $work/p-$1;
  fastcgi_temp_path $work/f-$1; uwsgi_temp_path $work/u-$1; scgi_temp_path $work/s-$1;
  $2 }
NGX
}
nginx_conf upstream "server { listen 127.0.0.1:$UP; root $work/www; default_type application/json; }"
nginx_conf proxy "upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NG; location / { proxy_pass http://up; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }"
cat > "$work/tb.conf" <<CONF
[DEFAULT]
workers = 1
log_level = warning
[admin]
listen = 127.0.0.1:$ADM
[listener:bench]
listen = 127.0.0.1:$TB
upstream = http://127.0.0.1:$UP
CONF

taskset -c 1 /usr/sbin/nginx -c "$work/upstream.conf" -p "$work" &
taskset -c 0 /usr/sbin/nginx -c "$work/proxy.conf" -p "$work" &
taskset -c 0 "$build/tracebridge" -f -c "$work/tb.conf" &
TBPID=$!
sleep 1

run() {	# $1 port -> "rps p99_ms"
	taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "http://127.0.0.1:$1/v3" > "$work/wrk.out"
	rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' "$work/wrk.out")
	echo "$rps $p99"
}
for i in $(seq "$rounds"); do
	echo "nginx $(run "$NG")" >> "$work/results"
	echo "tracebridge $(run "$TB")" >> "$work/results"
done
cat "$work/results"
/usr/bin/python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
for name in ("nginx", "tracebridge"):
    r = [float(x[1]) for x in rows if x[0] == name]
    p = [float(x[2]) for x in rows if x[0] == name]
    print("%-12s median %10.0f req/s   p99 %7.3f ms" % (name, statistics.median(r), statistics.median(p)))
PY
grep VmHWM /proc/$TBPID/status
