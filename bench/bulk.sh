#!/bin/bash
# Benchmark (issue 11): bulk bodies through tracebridge, nginx and HAProxy.
# Run by hand (not in CI), as root, loopback only:
#   bench/bulk.sh                    ROUNDS=3, SIZE=1G, 10 s per wrk row
#   ROUNDS=1 SIZE=256M bench/bulk.sh a quick check
# Environment:
#   TB_BIN     tracebridge binary (default: _build/tracebridge of this tree)
#   TB_BIN_B   a second build, measured as extra rows "tracebridge-B"
#              (before/after comparisons in one run)
#   ROUNDS     rounds, interleaved: every row once per round, the order
#              rotated by one each round (default 3)
#   SIZE       bulk body size, 1G, 256M... (default 1G)
#   SECS       seconds per wrk row (default 10); CONNS wrk connections (32)
#   SECTIONS   subset of "bulk wrk64k wrksmall tls" (default: those four),
#              or "syscalls" (what bench/syscalls.sh runs; SYS_N requests)
#   PROXY_CPU  the CPU of every proxy (default 1), LOAD_CPU that of curl,
#              wrk, the upstreams and redis-server (default 0); lib.sh's
#              scripts use the opposite layout (tracebridge on CPU 0)
#   REDIS_CPU  the CPU of redis-server (default LOAD_CPU): PROXY_CPU charges
#              the span store to the traced proxy instead of the load
#   ORIGIN_CPU the CPU of the upstreams (default LOAD_CPU); on a machine with
#              four or more, each of the four can have its own (bench/README)
#   KEEP=1     keep the temp dir (configs, logs, raw results)
# Rows, every proxy with 1 worker, upstream keep-alive, pinned alone on
# PROXY_CPU (only one of them is loaded at a time):
#   no-proxy             curl / wrk straight to the upstream: the rig's limit
#   tracebridge          [profiler] off
#   tracebridge+trace    every request sampled (sample_new = true, no cap),
#                        its span pushed to a local redis-server (REDIS_CPU)
#   tracebridge-B[+trace]  the same for TB_BIN_B
#   nginx                proxy_request_buffering off, proxy_max_temp_file_size 0
#   haproxy              HAProxy, nbthread 1, option forwardfor
#   haproxy-splice       the same with option splice-auto
# Sections:
#   bulk      one SIZE download (GET) and one SIZE upload (PUT, curl -T, no
#             Expect) per row and round, from/to bench/bulk_upstream.c
#             (sendfile for downloads; uploads read with 1 MiB recv()s and
#             discarded, answered with the byte count, which is checked).
#             MB/s = 10^6 bytes/s from curl's speed_download/speed_upload;
#             proxy CPU ms per GiB = its utime+stime (/proc/PID/stat) over
#             the transfer; peak RSS = VmHWM, reset before each transfer
#             (clear_refs 5), so it is that transfer's peak.
#   wrk64k    wrk (1 thread, CONNS connections) for a 64 KiB static file
#   wrksmall  the same for a 48-byte JSON (/v3, as the other bench scripts)
#             wrk rows: req/s, p99, proxy CPU us per request; the upstream is
#             nginx (1 worker, sendfile) on LOAD_CPU. Traced rows: the spans
#             are counted and Redis emptied after each row.
#   tls       SIZE download and upload over TLS 1.3 (curl --tlsv1.3, the
#             suite both servers pick from curl's offer is printed) through
#             tracebridge and nginx listeners with the same ECDSA P-256
#             self-signed certificate, made here by openssl
#   syscalls  (not by default) strace -c -f attached to each proxy while
#             SYS_N (200) GET /64k go through it, on one keep-alive connection
#             (curl URL globbing) and with Connection: close (a connection
#             each): syscalls per request by name; once, whatever ROUNDS
# Medians over rounds are printed as Markdown tables with ratios (bulk: vs
# no-proxy; tls and wrk: vs nginx), the CPU other processes took on
# PROXY_CPU meanwhile, and the issue's targets, met or not.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"

ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-1G}
SECTIONS=${SECTIONS:-bulk wrk64k wrksmall tls}
PCPU=${PROXY_CPU:-1}
LCPU=${LOAD_CPU:-0}
RCPU=${REDIS_CPU:-$LCPU}
OCPU=${ORIGIN_CPU:-$LCPU}
TB_BIN=${TB_BIN:-$top/_build/tracebridge}
TB_BIN_B=${TB_BIN_B:-}
BULK_TIMEOUT=${BULK_TIMEOUT:-300}	# seconds one bulk transfer may take
size=${SIZE%iB}; size=${size%B}
bytes=$(numfmt --from=iec "$size") || { echo "SIZE=$SIZE: not a size" >&2; exit 2; }
for b in "$TB_BIN" $TB_BIN_B; do
	[ -x "$b" ] || { echo "$b: no tracebridge binary (build one: scripts/build _build)" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "run as root (clear_refs, packages)" >&2; exit 2; }

# --- packages (Debian), installed when missing --------------------------------
need=""
for pair in nginx:nginx-light haproxy:haproxy wrk:wrk strace:strace redis-server:redis-server \
	redis-cli:redis-tools curl:curl openssl:openssl cc:gcc numfmt:coreutils; do
	command -v "${pair%%:*}" > /dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || need="$need ${pair#*:}"
done
if [ -n "$need" ]; then
	echo "installing:$need" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq --no-install-recommends $need > /dev/null ||
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $need > /dev/null; }
	# a postinst may start the system's instance: stop the ones installed now
	for svc in $need; do
		case $svc in nginx-light) svc=nginx ;; haproxy | redis-server) ;; *) continue ;; esac
		if command -v systemctl > /dev/null 2>&1 && [ -d /run/systemd/system ]; then
			systemctl stop "$svc" > /dev/null 2>&1 || true
		else
			service "$svc" stop > /dev/null 2>&1 || true
		fi
	done
fi

bench_init tb-bulk "$ROUNDS"
secs=${SECS:-10}
pids=()
cleanup() {	# every process started here: TERM, up to 5 s, then KILL
	set +e
	for p in "${pids[@]}"; do kill "$p" 2> /dev/null; done
	for _ in $(seq 50); do
		alive=0
		for p in "${pids[@]}"; do kill -0 "$p" 2> /dev/null && alive=1; done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -9 "$p" 2> /dev/null; done
	[ -n "${KEEP:-}" ] && echo "kept $work" >&2 || rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

avail_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
[ "$avail_kb" -gt $((bytes / 1024 + 262144)) ] ||
	{ echo "$work: ${avail_kb} KiB free, SIZE=$SIZE needs $((bytes / 1024)) KiB + 256 MiB" >&2; exit 1; }

# --- data, upstream, certificate --------------------------------------------------
# random bytes, once: read from the page cache by every transfer (RAM permitting)
head -c "$bytes" /dev/urandom > "$work/bulk"
head -c 65536 /dev/urandom > "$work/www/64k"
chmod 644 "$work/www/64k"
cc -O2 -pthread -o "$work/bulk_upstream" "$top/bench/bulk_upstream.c"
pki=$work/pki
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
	-subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	-keyout "$pki/key.pem" -out "$pki/cert.pem" 2> "$work/openssl.err" ||
	{ cat "$work/openssl.err" >&2; exit 1; }
chmod 755 "$pki"

UPB=$(port); UPW=$(port); RP=$(port)
NGB=$(port); NGW=$(port); NGT=$(port)
HPB=$(port); HPW=$(port); HSB=$(port); HSW=$(port)

taskset -c "$OCPU" "$work/bulk_upstream" "$UPB" "$work/bulk" &
pids+=($!)
nginx_conf upstream "sendfile on; tcp_nopush on;
  server { listen 127.0.0.1:$UPW; root $work/www; default_type application/json; }"
taskset -c "$OCPU" /usr/sbin/nginx -c "$work/upstream.conf" -p "$work" &
pids+=($!)
start_redis "$RCPU" "$RP" "$work/redis" --daemonize no --loglevel warning
RPID=$!
pids+=($RPID)

# --- proxies ----------------------------------------------------------------------
tb_bulk_conf() {	# $1 file, $2 traced (true | false), $3 bulk port, $4 wrk port, $5 TLS port, $6 admin port
	cat > "$1" <<CONF
[DEFAULT]
workers = 1
log_level = warning
drain_timeout = 1s
[admin]
listen = 127.0.0.1:$6
[listener:bulk]
listen = 127.0.0.1:$3
upstream = http://127.0.0.1:$UPB
service = bench
[listener:web]
listen = 127.0.0.1:$4
upstream = http://127.0.0.1:$UPW
service = bench
[listener:tls]
listen = 127.0.0.1:$5
upstream = http://127.0.0.1:$UPB
service = bench
tls_certificate = $pki/cert.pem
tls_key = $pki/key.pem
CONF
	if [ "$2" = true ]; then
		cat >> "$1" <<CONF
[profiler]
enabled = true
hmac_keys = SECRET_KEY
connection_string = redis://127.0.0.1:$RP
[tracing]
sample_new = true
project = bench
host = bench-host
[sampling]
max_traces_per_second = 0
CONF
	fi
}

# tracebridge rows: name -> "pid bulk_port wrk_port tls_port admin_port"
declare -A TB
tb_rows=()
start_tb_row() {	# $1 row name, $2 binary, $3 traced (true | false)
	local b w t a
	b=$(port); w=$(port); t=$(port); a=$(port)
	tb_bulk_conf "$work/$1.conf" "$3" "$b" "$w" "$t" "$a"
	taskset -c "$PCPU" "$2" -f -c "$work/$1.conf" 2> "$work/$1.log" &
	pids+=($!)
	TB[$1]="$! $b $w $t $a"
	tb_rows+=("$1")
}
start_tb_row tracebridge "$TB_BIN" false
start_tb_row tracebridge+trace "$TB_BIN" true
if [ -n "$TB_BIN_B" ]; then
	start_tb_row tracebridge-B "$TB_BIN_B" false
	start_tb_row tracebridge-B+trace "$TB_BIN_B" true
fi

ngx_loc="location / { proxy_pass http://@UP@; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; }"
nginx_conf proxy "upstream ub { server 127.0.0.1:$UPB; keepalive 16; }
  upstream uw { server 127.0.0.1:$UPW; keepalive 64; }
  client_max_body_size 0; proxy_request_buffering off; proxy_max_temp_file_size 0;
  server { listen 127.0.0.1:$NGB; ${ngx_loc//@UP@/ub} }
  server { listen 127.0.0.1:$NGW; ${ngx_loc//@UP@/uw} }
  server { listen 127.0.0.1:$NGT ssl; ssl_certificate $pki/cert.pem; ssl_certificate_key $pki/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3; ${ngx_loc//@UP@/ub} }"
taskset -c "$PCPU" /usr/sbin/nginx -c "$work/proxy.conf" -p "$work" &
NGM=$!
pids+=($NGM)

haproxy_conf() {	# $1 name, $2 bulk port, $3 wrk port, $4 extra defaults line
	cat > "$work/$1.cfg" <<CFG
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  option forwardfor
  $4
frontend bulk
  bind 127.0.0.1:$2
  default_backend bulk
backend bulk
  server s 127.0.0.1:$UPB
frontend web
  bind 127.0.0.1:$3
  default_backend web
backend web
  server s 127.0.0.1:$UPW
CFG
	taskset -c "$PCPU" haproxy -db -f "$work/$1.cfg" > "$work/$1.log" 2>&1 &
	pids+=($!)
}
haproxy_conf haproxy "$HPB" "$HPW" ""
HPPID=$!
haproxy_conf haproxy-splice "$HSB" "$HSW" "option splice-auto"
HSPID=$!

# --- readiness --------------------------------------------------------------------
probe() {	# $1 URL -> HTTP status (000 when nothing answers)
	curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$pki/cert.pem" "$1" || true
}
ready() {	# $1 what, $2 URL, $3 expected status: wait up to 5 s
	local c
	for _ in $(seq 50); do
		c=$(probe "$2")
		[ "$c" = "$3" ] && return 0
		sleep 0.1
	done
	echo "$1: $2 answered $c, not $3; see $work (KEEP=1 keeps it)" >&2
	KEEP=1
	exit 1
}
ready upstream "http://127.0.0.1:$UPW/64k" 200
ready upstream "http://127.0.0.1:$UPB/none" 404
for r in "${tb_rows[@]}"; do
	read -r _ b w t _ <<< "${TB[$r]}"
	ready "$r" "http://127.0.0.1:$b/none" 404
	ready "$r" "http://127.0.0.1:$w/64k" 200
	ready "$r" "https://127.0.0.1:$t/none" 404
done
ready nginx "http://127.0.0.1:$NGB/none" 404
ready nginx "http://127.0.0.1:$NGW/64k" 200
ready nginx "https://127.0.0.1:$NGT/none" 404
for p in "$HPB" "$HSB"; do ready haproxy "http://127.0.0.1:$p/none" 404; done
for p in "$HPW" "$HSW"; do ready haproxy "http://127.0.0.1:$p/64k" 200; done
NGPID=$(pgrep -P "$NGM" | head -1)
pids+=($NGPID)

# row -> "pid bulk_port wrk_port tls_port" (pid - for no-proxy)
declare -A ROW
ROW[no-proxy]="- $UPB $UPW -"
for r in "${tb_rows[@]}"; do
	read -r p b w t _ <<< "${TB[$r]}"
	ROW[$r]="$p $b $w $t"
done
ROW[nginx]="$NGPID $NGB $NGW $NGT"
ROW[haproxy]="$HPPID $HPB $HPW -"
ROW[haproxy-splice]="$HSPID $HSB $HSW -"
bulk_rows=(no-proxy "${tb_rows[@]}" nginx haproxy haproxy-splice)
wrk64_rows=("${bulk_rows[@]}")
small_rows=(no-proxy "${tb_rows[@]}" nginx haproxy)
tls_rows=("${tb_rows[@]}" nginx)

tls_cipher() {	# $1 port -> the TLS 1.3 suite negotiated with curl
	curl -sv --tlsv1.3 --cacert "$pki/cert.pem" -o /dev/null "https://127.0.0.1:$1/none" 2>&1 |
		sed -n 's/.*SSL connection using \(TLSv1.3\) \/ \([A-Z0-9_]*\).*/\1 \2/p' | head -1
}
: > "$work/ciphers"
case " $SECTIONS " in *" tls "*) ;; *) tls_rows=() ;; esac
for r in "${tls_rows[@]}"; do
	read -r _ _ _ t <<< "${ROW[$r]}"
	echo "$r $(tls_cipher "$t")" >> "$work/ciphers"
done

# --- measurements -----------------------------------------------------------------
hz=$(getconf CLK_TCK)
: > "$work/results"
ticks() { if [ "$1" = - ]; then echo 0; else cpu_ticks "$1"; fi; }
hwm_reset() { [ "$1" = - ] || echo 5 > "/proc/$1/clear_refs"; }
hwm() { if [ "$1" = - ]; then echo 0; else awk '/^VmHWM/ {print $2}' "/proc/$1/status"; fi; }

transfer() {	# $1 section (bulk | tls), $2 row, $3 down | up: one SIZE transfer; appends
	# "section row dir ok MB/s cpu_ticks hwm_kB" to results (ok 0: failed, reason in $work/fail.log)
	local pid p url c0 out code n speed ok=1 tls=()
	read -r pid b _ t <<< "${ROW[$2]}"
	if [ "$1" = tls ]; then
		p=$t; url="https://127.0.0.1:$p"; tls=(--tlsv1.3 --cacert "$pki/cert.pem")
	else
		p=$b; url="http://127.0.0.1:$p"
	fi
	hwm_reset "$pid"
	c0=$(ticks "$pid")
	if [ "$3" = down ]; then
		out=$(taskset -c "$LCPU" curl -s "${tls[@]}" --max-time "$BULK_TIMEOUT" -o /dev/null \
			-w '%{http_code} %{size_download} %{speed_download}' "$url/bulk" || true)
	else
		: > "$work/up.out"
		out=$(taskset -c "$LCPU" curl -s "${tls[@]}" --max-time "$BULK_TIMEOUT" -H 'Expect:' \
			-T "$work/bulk" -o "$work/up.out" -w '%{http_code} %{size_upload} %{speed_upload}' \
			"$url/upload" || true)
	fi
	c1=$(ticks "$pid")
	read -r code n speed <<< "$out"
	if [ "${code:-}" != 200 ] || [ "${n:-}" != "$bytes" ] ||
		{ [ "$3" = up ] && [ "$(cat "$work/up.out")" != "$bytes" ]; }; then
		ok=0
		echo "$1 $2 $3: status ${code:-none}, $n of $bytes bytes, answer '$(head -c 80 "$work/up.out" 2> /dev/null)'" >> "$work/fail.log"
	fi
	echo "$1 $2 $3 $ok $(awk -v s="${speed:-0}" 'BEGIN {printf "%.1f", s / 1e6}') $((c1 - c0)) $(hwm "$pid")" >> "$work/results"
	case $2 in *+trace) read -r _ _ _ _ a <<< "${TB[$2]}"; drain "$a" ;; esac
	return 0
}

spans=0
drain() {	# $1 admin port: wait until the buffer is empty, count the traces, empty Redis
	for _ in $(seq 50); do
		curl -s "http://127.0.0.1:$1/metrics" | grep -qx 'tracebridge_span_buffer_bytes 0' && break
		sleep 0.1
	done
	n=$(redis-cli -p "$RP" dbsize 2> /dev/null || true)
	spans=$((spans + ${n:-0}))
	redis-cli -p "$RP" flushall > /dev/null
}

wrk_row() {	# $1 section (wrk64k | wrksmall), $2 row: appends
	# "section row - ok rps p99_ms requests errors cpu_ticks hwm_kB" to results
	local pid w path c0 ok=1
	read -r pid _ w _ <<< "${ROW[$2]}"
	if [ "$1" = wrk64k ]; then path=/64k; else path=/v3; fi
	hwm_reset "$pid"
	c0=$(ticks "$pid")
	taskset -c "$LCPU" timeout $((secs + 30)) wrk -t1 -c"$conns" -d"${secs}s" --latency \
		"http://127.0.0.1:$w$path" > "$work/wrk.out" 2>&1 || ok=0
	c1=$(ticks "$pid")
	out=$(awk '
	/Requests\/sec/ {rps = $2}
	/requests in/ {n = $1}
	/Socket errors/ {for (i = 3; i <= NF; i++) {v = $i; gsub(",", "", v); if (v ~ /^[0-9]+$/) e += v}}
	/Non-2xx/ {e += $NF}
	$1 == "99%" {v = $2; if (v ~ /ms$/) {sub("ms", "", v)} else if (v ~ /us$/) {sub("us", "", v); v = v / 1000}
		else if (v ~ /s$/) {sub("s", "", v); v = v * 1000}; p99 = v}
	END {printf "%s %s %s %d\n", rps + 0, p99 + 0, n + 0, e}' "$work/wrk.out")
	[ "${out%% *}" != 0 ] || { ok=0; cat "$work/wrk.out" >> "$work/fail.log"; }
	echo "$1 $2 - $ok $out $((c1 - c0)) $(hwm "$pid")" >> "$work/results"
	case $2 in *+trace) read -r _ _ _ _ a <<< "${TB[$2]}"; drain "$a" ;; esac
	return 0
}

SYS_N=${SYS_N:-200}
strace_row() {	# $1 row, $2 keepalive | close: strace -c -f of the row's proxy during SYS_N
	# GET /64k; appends "syscalls row mode name calls errors" lines to results
	local pid w spid all h=()
	read -r pid _ w _ <<< "${ROW[$1]}"
	[ "$2" = close ] && h=(-H "Connection: close")
	curl -s "${h[@]}" "http://127.0.0.1:$w/64k?warm=[1-5]" > /dev/null	# upstream pool warm
	timeout 300 strace -c -f -qq -o "$work/strace.$1.$2" -p "$pid" &
	spid=$!
	pids+=($spid)
	for _ in $(seq 50); do	# until every thread is traced
		all=1
		for st in /proc/"$pid"/task/*/status; do
			awk '/^TracerPid/ {exit $2 == 0}' "$st" || all=0
		done
		[ "$all" = 1 ] && break
		sleep 0.1
	done
	taskset -c "$LCPU" curl -s --max-time 120 "${h[@]}" -w '%{http_code}\n' \
		"http://127.0.0.1:$w/64k?n=[1-$SYS_N]" > "$work/sys.out" || true
	sleep 0.2
	kill -INT "$spid"
	wait "$spid" || true
	[ "$(grep -c '200$' "$work/sys.out")" = "$SYS_N" ] ||
		echo "syscalls $1 $2: $(grep -c '200$' "$work/sys.out") of $SYS_N answered 200" >> "$work/fail.log"
	awk -v r="$1" -v m="$2" '$1 ~ /^[0-9.]+$/ && $NF != "total" && $NF ~ /^[a-z_0-9]+$/ {
		print "syscalls", r, m, $NF, $4, (NF == 6 ? $5 : 0)}' "$work/strace.$1.$2" >> "$work/results"
}

rotate() {	# $1 offset, then rows: prints the rows rotated left by offset
	local k=$1 n
	shift
	n=$#
	for j in $(seq 0 $((n - 1))); do
		local i=$(((j + k) % n + 1))
		echo "${!i}"
	done
}

has() { case " $SECTIONS " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
if has syscalls; then
	for m in keepalive close; do
		for r in "${tb_rows[@]}" nginx haproxy haproxy-splice; do strace_row "$r" $m; done
	done
fi
cpustat() {	# CPU $PCPU: "user+nice+system irq+softirq steal all" in ticks, from /proc/stat
	awk -v c="cpu$PCPU" '$1 == c {print $2 + $3 + $4, $7 + $8, $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat
}
t_start=$(date +%s)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
stat0=$(cpustat)
runs=$ROUNDS
has bulk || has wrk64k || has wrksmall || has tls || runs=0
for i in $(seq "$runs"); do
	k=$((i - 1))
	echo "round $i of $ROUNDS ($(($(date +%s) - t_start)) s)" >&2
	if has bulk; then
		for d in down up; do
			for r in $(rotate $k "${bulk_rows[@]}"); do transfer bulk "$r" $d; done
		done
	fi
	if has wrk64k; then
		for r in $(rotate $k "${wrk64_rows[@]}"); do wrk_row wrk64k "$r"; done
	fi
	if has wrksmall; then
		for r in $(rotate $k "${small_rows[@]}"); do wrk_row wrksmall "$r"; done
	fi
	if has tls; then
		for d in down up; do
			for r in $(rotate $k "${tls_rows[@]}"); do transfer tls "$r" $d; done
		done
	fi
done
for r in "${tb_rows[@]}"; do
	read -r pid _ _ _ a <<< "${TB[$r]}"
	kill -0 "$pid" 2> /dev/null || { echo "$r exited during the run; see $work/$r.log" >&2; KEEP=1; }
	case $r in *+trace) ;; *) continue ;; esac
	curl -s "http://127.0.0.1:$a/metrics" |
		sed -n "s/^\(tracebridge_spans_[a-z_]*\)\({[^}]*}\)\{0,1\} /$r \1\2 /p" >> "$work/spans"
done
stat1=$(cpustat)
[ ! -s "$work/fail.log" ] || { echo "failures:" >&2; cat "$work/fail.log" >&2; }

# --- report -----------------------------------------------------------------------
echo "# bench/bulk.sh $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) CPUs ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(uname -r)"
echo "# ROUNDS=$ROUNDS SIZE=$SIZE ($bytes bytes) SECS=$secs CONNS=$conns, proxies on CPU $PCPU, load on CPU $LCPU, upstreams on CPU $OCPU, redis-server on CPU $RCPU; load average before $load0, after $(cut -d' ' -f1-3 /proc/loadavg); $(($(date +%s) - t_start)) s"
echo "# TB_BIN=$TB_BIN${TB_BIN_B:+ TB_BIN_B=$TB_BIN_B}; $(/usr/sbin/nginx -v 2>&1); $(haproxy -v | head -1 | cut -d' ' -f1-3); $(curl --version | head -1 | cut -d' ' -f1-2)"
summarize "$work/results" "$bytes" "$hz" "$work/ciphers" "$spans" "$work/spans" "$SIZE" "$SYS_N" "$stat0" "$stat1" "$PCPU" <<'PY'
nbytes, hz = float(sys.argv[2]), float(sys.argv[3])
ciphers = dict(l.split(None, 1) for l in open(sys.argv[4]) if len(l.split()) > 1)
spans_counted = int(sys.argv[5])
gib = nbytes / 2**30
def sel(sec, row, d="-"):
    return [x for x in rows if x[0] == sec and x[1] == row and x[2] == d]
def med_of(xs):
    return statistics.median(xs) if xs else float("nan")
def ok(xs):
    return [x for x in xs if x[3] == "1"]
def fails(xs):
    return len(xs) - len(ok(xs))
def order(sec):
    seen = []
    for x in rows:
        if x[0] == sec and x[1] not in seen:
            seen.append(x[1])
    return seen
def fmt(v, f):
    return "-" if v != v else f % v
bulk = {}   # (sec, row, dir) -> (MB/s, CPU ms/GiB, peak RSS MiB)
label = sys.argv[7]
for sec in ("bulk", "tls"):
    if not any(x[0] == sec for x in rows):
        continue
    ref = "nginx" if sec == "tls" else "no-proxy"
    n = max(len(sel(sec, r, d)) for r in order(sec) for d in ("down", "up"))
    if sec == "tls":
        suites = sorted(set(v.split()[1] for v in ciphers.values()))
        print("\n%s download and upload over TLS 1.3 (%s), medians of %d rounds" % (label, ", ".join(suites), n))
        print()
    else:
        print("\n%s download and upload, plain HTTP, medians of %d rounds" % (label, n))
        print()
    print("| row | dir | MB/s | x %s | proxy CPU ms/GiB | peak RSS MiB | failed |" % ref)
    print("|---|---|---:|---:|---:|---:|---:|")
    for d in ("down", "up"):
        base = med_of([float(x[4]) for x in ok(sel(sec, ref, d))])
        for r in order(sec):
            xs = sel(sec, r, d)
            good = ok(xs)
            mbps = med_of([float(x[4]) for x in good])
            cpu = med_of([float(x[5]) / hz * 1000 / gib for x in good]) if r != "no-proxy" else float("nan")
            rss = max([float(x[6]) / 1024 for x in good]) if good and r != "no-proxy" else float("nan")
            bulk[(sec, r, d)] = (mbps, cpu, rss)
            print("| %s | %s | %s | %s | %s | %s | %d |" % (r, d, fmt(mbps, "%.0f"), fmt(mbps / base, "%.3f"),
                  fmt(cpu, "%.0f"), fmt(rss, "%.1f"), fails(xs)))
sysn = float(sys.argv[8])
for mode, what in (("keepalive", "one keep-alive connection"), ("close", "Connection: close, a connection each")):
    xs = [x for x in rows if x[0] == "syscalls" and x[2] == mode]
    if not xs:
        continue
    cols = list(dict.fromkeys(x[1] for x in xs))
    calls = {}
    for x in xs:
        calls.setdefault(x[3], {})[x[1]] = (float(x[4]) / sysn, float(x[5]) / sysn)
    print("\nsyscalls per GET /64k (strace -c -f, %d requests, %s)" % (sysn, what))
    print()
    print("| syscall | " + " | ".join(cols) + " |")
    print("|---|" + "---:|" * len(cols))
    names = sorted(calls, key=lambda n: -max(v[0] for v in calls[n].values()))
    for n in names:
        if max(v[0] for v in calls[n].values()) < 0.005:
            continue
        print("| %s | " % n + " | ".join(
            "%.2f" % calls[n][c][0] + (" (%.2f failed)" % calls[n][c][1] if calls[n].get(c, (0, 0))[1] >= 0.005 else "")
            if c in calls[n] else "-" for c in cols) + " |")
    print("| **total** | " + " | ".join("**%.2f**" % sum(calls[n][c][0] for n in calls if c in calls[n]) for c in cols) + " |")
wrkres = {}
for sec, what in (("wrk64k", "64 KiB responses"), ("wrksmall", "48-byte responses")):
    if not any(x[0] == sec for x in rows):
        continue
    ng = med_of([float(x[4]) for x in ok(sel(sec, "nginx"))])
    ngc = med_of([float(x[8]) / hz * 1e6 / max(float(x[6]), 1) for x in ok(sel(sec, "nginx"))])
    print("\nwrk, %s, medians" % what)
    print()
    print("| row | req/s | x nginx | p99 ms | proxy CPU us/req | x nginx CPU/req | peak RSS MiB | errors | failed |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in order(sec):
        xs = sel(sec, r)
        good = ok(xs)
        rps = med_of([float(x[4]) for x in good])
        p99 = med_of([float(x[5]) for x in good])
        cpu = med_of([float(x[8]) / hz * 1e6 / max(float(x[6]), 1) for x in good]) if r != "no-proxy" else float("nan")
        rss = max([float(x[9]) / 1024 for x in good]) if good and r != "no-proxy" else float("nan")
        wrkres[(sec, r)] = (rps, p99, cpu)
        print("| %s | %s | %s | %s | %s | %s | %s | %d | %d |" % (r, fmt(rps, "%.0f"), fmt(rps / ng, "%.3f"), fmt(p99, "%.2f"),
              fmt(cpu, "%.1f"), fmt(cpu / ngc, "%.3f"), fmt(rss, "%.1f"), sum(int(x[7]) for x in xs), fails(xs)))
if ciphers:
    print("\nTLS suites negotiated with curl: " + "; ".join("%s %s" % (k, v.strip()) for k, v in ciphers.items()))
counters = [l.split() for l in open(sys.argv[6])] if sys.argv[6] else []
traced = sum(int(float(x[6])) for x in rows if x[1].endswith("+trace") and x[0].startswith("wrk"))
traced += sum(1 for x in rows if x[1].endswith("+trace") and x[0] in ("bulk", "tls"))
if traced:
    rec = {}
    for c in counters:
        k = (c[0], "recorded" if "recorded" in c[1] else "dropped")
        rec[k] = rec.get(k, 0) + int(float(c[2]))
    print("spans: %d requests on traced rows (wrk's count: not those in flight when a row ends), "
          "%d traces found in Redis; %s" % (traced, spans_counted, ", ".join(
          "%s %s %d" % (k[0], k[1], v) for k, v in sorted(rec.items()))))

# the issue's targets, for each tracebridge row
tbs = [r for r in order("bulk") + order("wrk64k") + order("wrksmall") + order("tls") if r.startswith("tracebridge")]
tbs = list(dict.fromkeys(tbs))
others = ("nginx", "haproxy", "haproxy-splice")
# what else ran on the proxies' CPU during the rounds (a shared machine, a VM)
st0, st1 = [float(v) for v in sys.argv[9].split()], [float(v) for v in sys.argv[10].split()]
own = sum(float(x[5]) for x in rows if x[0] in ("bulk", "tls")) + sum(float(x[8]) for x in rows if x[0].startswith("wrk"))
if st1[3] > st0[3] and own:
    d = [(b - a) / hz for a, b in zip(st0, st1)]
    print("\nCPU %s during the rounds, %.0f s: proxies under test %.1f s (utime+stime), other processes %.1f s, "
          "irq+softirq %.1f s, steal %.1f s" % (sys.argv[11], d[3], own / hz, d[0] - own / hz, d[1], d[2]))
if any(x[0] != "syscalls" for x in rows):
    print("\nTargets (issue 11)")
    print()
    print("| target | row | measured | met |")
    print("|---|---|---|---|")
def line(t, r, m, c):
    print("| %s | %s | %s | %s |" % (t, r, m, "yes" if c else "**no**"))
for r in tbs:
    for d in ("down", "up"):
        if ("bulk", r, d) not in bulk:
            continue
        mb, cpu, _ = bulk[("bulk", r, d)]
        base = bulk[("bulk", "no-proxy", d)][0]
        best = max(bulk[("bulk", o, d)][0] for o in others)
        lowcpu = min(bulk[("bulk", o, d)][1] for o in others)
        line("%s %s >= 0.85x no-proxy" % ("download" if d == "down" else "upload", label), r,
             "%.0f / %.0f MB/s = %.3f" % (mb, base, mb / base), mb >= 0.85 * base)
        line("%s above best of nginx, HAProxy" % ("download" if d == "down" else "upload"), r,
             "%.0f vs %.0f MB/s" % (mb, best), mb > best)
        line("%s CPU/GiB below theirs" % ("download" if d == "down" else "upload"), r,
             "%.0f vs %.0f ms" % (cpu, lowcpu), cpu < lowcpu)
    if ("wrk64k", r) in wrkres:
        rps, _, cpu = wrkres[("wrk64k", r)]
        nrps, _, ncpu = wrkres[("wrk64k", "nginx")]
        line("64 KiB: >= 1.2x nginx req/s", r, "%.0f / %.0f = %.3f" % (rps, nrps, rps / nrps), rps >= 1.2 * nrps)
        line("64 KiB: CPU/request <= nginx", r, "%.1f vs %.1f us" % (cpu, ncpu), cpu <= ncpu)
    if ("wrksmall", r) in wrkres and r.endswith("+trace"):
        rps, p99, _ = wrkres[("wrksmall", r)]
        line("small, traced: >= HAProxy req/s", r, "%.0f vs %.0f" % (rps, wrkres[("wrksmall", "haproxy")][0]),
             rps >= wrkres[("wrksmall", "haproxy")][0])
        line("small, traced: p99 <= nginx", r, "%.2f vs %.2f ms" % (p99, wrkres[("wrksmall", "nginx")][1]),
             p99 <= wrkres[("wrksmall", "nginx")][1])
    if ("tls", r, "down") in bulk:
        mb = bulk[("tls", r, "down")][0]
        line("TLS 1.3 download >= nginx", r, "%.0f vs %.0f MB/s" % (mb, bulk[("tls", "nginx", "down")][0]),
             mb >= bulk[("tls", "nginx", "down")][0])
    rss = [bulk[k][2] for k in bulk if k[1] == r]
    if rss:
        line("peak RSS < 64 MiB, %s both ways, %s" % (label, " and ".join(s for s in ("bulk", "tls") if (s, r, "down") in bulk)),
             r, "%.1f MiB" % max(rss), max(rss) < 64)
PY
