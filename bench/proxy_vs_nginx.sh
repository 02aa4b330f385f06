#!/bin/bash
# Benchmark: tracebridge vs nginx as reverse proxies of the same upstream.
# Run by hand (not in CI): bench/proxy_vs_nginx.sh [BUILD_DIR] [ROUNDS] [SECONDS]
# Both proxies: 1 worker, upstream keep-alive on, pinned to CPU 0; the
# upstream (nginx answering a small static body) and wrk share CPU 1.
# Rounds are interleaved; medians of requests/s and p99 latency are printed.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_init tb-bench 5 "$@"

UP=$(port); NG=$(port); TB=$(port); ADM=$(port)
nginx_conf proxy "upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$NG; location / { proxy_pass http://up; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }"
tb_conf "$work/tb.conf" "$TB" "$ADM"

start_upstream "$UP"
taskset -c 0 /usr/sbin/nginx -c "$work/proxy.conf" -p "$work" &
start_tb "$work/tb.conf"
TBPID=$!
sleep 1
check_200 nginx "$NG"
check_200 tracebridge "$TB"

run() {	# $1 port -> "rps p99_ms"
	wrk_run "$1"
	echo "$rps $p99"
}
for i in $(seq "$rounds"); do
	echo "nginx $(run "$NG")" >> "$work/results"
	echo "tracebridge $(run "$TB")" >> "$work/results"
done
cat "$work/results"
summarize "$work/results" <<'PY'
for name in ("nginx", "tracebridge"):
    print("%-12s median %10.0f req/s   p99 %7.3f ms" % (name, med(name, 1), med(name, 2)))
PY
grep VmHWM /proc/$TBPID/status
