#!/bin/bash
# Benchmark: tracebridge vs nginx terminating TLS in front of the same
# upstream. Run by hand (not in CI), loopback only:
#   bench/tls_vs_nginx.sh [BUILD_DIR] [ROUNDS] [SECONDS]
# (KEYS="rsa ecdsa" and MODES="handshake keepalive" choose a subset)
# Both proxies: 1 worker pinned to CPU 0, TLS 1.2/1.3 offered (wrk and the
# servers settle on TLS 1.3), the same certificates (made here by openssl:
# an RSA 2048 and an ECDSA P-256 leaf from a throwaway CA, one listening port
# each), plain HTTP with upstream keep-alive to the upstream nginx (static
# JSON, CPU 1); wrk on CPU 1. Two measurements per key type:
#   handshake: `Connection: close` on every request, so each request is a new
#              TLS connection. wrk keeps the session of its previous
#              connection (SSL_clear keeps it) and offers it again, so both
#              servers run with session tickets and the session cache off
#              (tracebridge: tls_session_tickets = false and
#              tls_session_cache_size = 0; nginx: ssl_session_tickets off and
#              ssl_session_cache off): every handshake is a full one, checked
#              below with tracebridge's tracebridge_tls_resumed_total.
#   keepalive: persistent connections ($CONNS, 32), one handshake each, then
#              requests: the cost of the record layer.
# Rounds are interleaved; medians of requests/s and p99 latency are printed,
# with each server's CPU time per request (nginx: its one worker), the
# steadier figure on a 2-CPU machine where wrk and the upstream share CPU 1.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_init tb-tls-bench 5 "$@"

# --- certificates ---------------------------------------------------------------
pki=$work/pki
mkdir -p "$pki"
ossl() { openssl "$@" 2> "$work/openssl.err" || { cat "$work/openssl.err" >&2; exit 1; }; }
ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/ca.key"
ossl req -x509 -new -key "$pki/ca.key" -subj "/O=Bench/CN=Bench CA" -days 2 \
	-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
	-out "$pki/ca.pem"
printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n' \
	> "$pki/leaf.ext"
for k in rsa ecdsa; do
	if [ $k = rsa ]; then
		ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/$k.key"
	else
		ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$pki/$k.key"
	fi
	ossl req -new -key "$pki/$k.key" -subj "/CN=localhost" -out "$pki/$k.csr"
	ossl x509 -req -in "$pki/$k.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" \
		-set_serial "0x$(openssl rand -hex 8)" -days 2 -extfile "$pki/leaf.ext" -out "$pki/$k.leaf"
	cat "$pki/$k.leaf" "$pki/ca.pem" > "$pki/$k.pem"
done
# nginx's workers (nobody when started as root) read nothing here: the master
# loads certificates and keys before forking
chmod 755 "$pki"

# --- servers --------------------------------------------------------------------
UP=$(port); ADM=$(port)
TB_rsa=$(port); TB_ecdsa=$(port); NG_rsa=$(port); NG_ecdsa=$(port)

ng_server() {	# $1 port, $2 key type: an nginx TLS server block proxying to upstream u
	cat <<NGX
  server { listen 127.0.0.1:$1 ssl;
    ssl_certificate $pki/$2.pem; ssl_certificate_key $pki/$2.key;
    ssl_protocols TLSv1.2 TLSv1.3; ssl_session_tickets off; ssl_session_cache off;
    location / { proxy_pass http://u; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }
NGX
}
nginx_conf proxy "upstream u { server 127.0.0.1:$UP; keepalive 32; }
$(ng_server "$NG_rsa" rsa)
$(ng_server "$NG_ecdsa" ecdsa)"

tb_tls() {	# $1 key type: a listener's TLS lines
	printf 'tls_certificate = %s\ntls_key = %s\ntls_session_tickets = false\ntls_session_cache_size = 0\n' \
		"$pki/$1.pem" "$pki/$1.key"
}
tb_conf "$work/tb.conf" "$TB_rsa" "$ADM" "" "$(tb_tls rsa)
[listener:bench_ecdsa]
listen = 127.0.0.1:$TB_ecdsa
upstream = http://127.0.0.1:$UP
$(tb_tls ecdsa)"

start_upstream "$UP"
taskset -c 0 /usr/sbin/nginx -c "$work/proxy.conf" -p "$work" &
start_tb "$work/tb.conf" "$work/tb.log"
TBPID=$!
sleep 1

check_tls() {	# $1 what, $2 port, $3 key type: one GET /v3 over TLS, verified against the CA; exit unless 200
	code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$pki/ca.pem" "https://127.0.0.1:$2/v3" || true)
	[ "$code" = 200 ] || { echo "$1 ($3) answered ${code:-nothing}, not 200; see $work" >&2; exit 1; }
}
for k in rsa ecdsa; do
	eval "check_tls nginx \$NG_$k $k; check_tls tracebridge \$TB_$k $k"
done
kill -0 "$TBPID"
# the proxy nginx's one worker: its CPU time per request is compared too
NGPID=$(pgrep -P "$(cat "$work/proxy.pid")" | head -1)

tb_metric() {	# $1 metric with labels -> its value (0 when absent)
	curl -s "http://127.0.0.1:$ADM/metrics" | awk -v m="$1" '$1 == m {v = $2} END {print v + 0}'
}

tls_wrk() {	# $1 port, $2 mode (handshake | keepalive): wrk over TLS on CPU 1 against /v3
	# -> "rps p99_ms requests errors" (errors: socket errors + non-2xx answers)
	if [ "$2" = handshake ]; then
		set -- "$1" -H "Connection: close"
	else
		set -- "$1"
	fi
	taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency "${@:2}" \
		"https://127.0.0.1:$1/v3" > "$work/wrk.out" 2>&1 || true
	awk '
	/Requests\/sec/ {rps = $2}
	/requests in/ {n = $1}
	/Socket errors/ {for (i = 3; i <= NF; i++) {v = $i; gsub(",", "", v); if (v ~ /^[0-9]+$/) e += v}}
	/Non-2xx/ {e += $NF}
	$1 == "99%" {v = $2; if (v ~ /ms$/) {sub("ms", "", v)} else if (v ~ /us$/) {sub("us", "", v); v = v / 1000}
		else if (v ~ /s$/) {sub("s", "", v); v = v * 1000}; p99 = v}
	END {printf "%s %s %s %d\n", rps, p99, n, e}' "$work/wrk.out"
}

run() {	# $1 server (nginx | tracebridge), $2 key type, $3 mode: appends
	# "server-key-mode rps p99_ms requests errors server_cpu_ticks" to $work/results
	local pid
	if [ "$1" = nginx ]; then eval "p=\$NG_$2"; pid=$NGPID; else eval "p=\$TB_$2"; pid=$TBPID; fi
	c0=$(cpu_ticks "$pid")
	out=$(tls_wrk "$p" "$3")
	echo "$1-$2-$3 $out $(( $(cpu_ticks "$pid") - c0 ))" >> "$work/results"
}

tb_sum() {	# $1 metric name: its sum over both tracebridge listeners
	echo $(( $(tb_metric "$1{listener=\"bench\"}") + $(tb_metric "$1{listener=\"bench_ecdsa\"}") ))
}
hs0=$(tb_sum tracebridge_tls_handshakes_total)
res0=$(tb_sum tracebridge_tls_resumed_total)
: > "$work/results"
for i in $(seq "$rounds"); do
	for k in ${KEYS:-rsa ecdsa}; do
		for mode in ${MODES:-handshake keepalive}; do
			run nginx "$k" "$mode"
			run tracebridge "$k" "$mode"
		done
	done
done
hs=$(( $(tb_sum tracebridge_tls_handshakes_total) - hs0 ))
res=$(( $(tb_sum tracebridge_tls_resumed_total) - res0 ))
cat "$work/results"
summarize "$work/results" "$hs" "$res" "$(getconf CLK_TCK)" <<'PY'
hz = float(sys.argv[4])
print("%-8s %-10s %-12s %12s %10s %16s %8s" % ("key", "mode", "server", "req/s", "p99 ms",
                                             "CPU us/req", "errors"))
for k in ("rsa", "ecdsa"):
    for mode in ("handshake", "keepalive"):
        if not col("nginx-%s-%s" % (k, mode), 1):
            continue    # not run (KEYS / MODES)
        for srv in ("nginx", "tracebridge"):
            name = "%s-%s-%s" % (srv, k, mode)
            cpu = "%.1f" % statistics.median(
                [float(x[5]) / hz * 1e6 / max(float(x[3]), 1) for x in rows if x[0] == name])
            print("%-8s %-10s %-12s %12.0f %10.3f %16s %8d" % (
                k, mode, srv, med(name, 1), med(name, 2), cpu, sum(col(name, 4))))
        cpu = {srv: statistics.median([float(x[5]) / max(float(x[3]), 1) for x in rows
                                      if x[0] == "%s-%s-%s" % (srv, k, mode)])
               for srv in ("nginx", "tracebridge")}
        print("%-8s %-10s ratio tracebridge/nginx %.3f by req/s, %.3f by CPU per request" % (
            k, mode, med("tracebridge-%s-%s" % (k, mode), 1) / med("nginx-%s-%s" % (k, mode), 1),
            cpu["nginx"] / cpu["tracebridge"] if cpu["tracebridge"] else 0))
print("tracebridge TLS handshakes during the runs: %s, resumed: %s (must be 0: full handshakes)"
      % (sys.argv[2], sys.argv[3]))
PY
grep VmHWM /proc/$TBPID/status
