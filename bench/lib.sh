# Shared setup of the benchmark scripts bench/*.sh; sourced, not run.
# The sourcing script sets top (the source tree) and calls bench_init before
# anything else.
# Loopback only. Layout of every benchmark: tracebridge pinned to CPU 0; the
# upstream (nginx answering a small static JSON at /v3), wrk and (where used)
# redis-server on CPU 1. Everything started in the background is killed on
# exit and the temp dir removed (kept when KEEP is set).

bench_init() {	# $1 temp dir prefix, $2 default ROUNDS, then the script's arguments
	# [BUILD_DIR] [ROUNDS] [SECONDS]: sets build, rounds, secs and conns
	# (wrk's connections: $CONNS, 32), makes $work with the static JSON and
	# sets the exit trap
	build=${3:-$top/_build}
	rounds=${4:-$2}
	secs=${5:-10}
	conns=${CONNS:-32}
	work=$(mktemp -d "/tmp/$1.XXXXXX")
	trap 'kill $(jobs -p) 2>/dev/null; sleep 0.2; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
	# mktemp makes the directory 0700: nginx's workers (nobody when started
	# as root) could not read the static file and every answer would be a 403
	mkdir -p "$work/www"
	chmod 755 "$work" "$work/www"
	printf '{"version": {"id": "v3.14", "status": "stable"}}\n' > "$work/www/v3"
	chmod 644 "$work/www/v3"
}

port() { /usr/bin/python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

nginx_conf() {	# $1 name, $2 server block(s): writes $work/$1.conf
	cat > "$work/$1.conf" <<NGX
daemon off; worker_processes 1; pid $work/$1.pid; error_log $work/$1.err;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/b-$1; proxy_temp_path $work/p-$1;
  fastcgi_temp_path $work/f-$1; uwsgi_temp_path $work/u-$1; scgi_temp_path $work/s-$1;
  $2 }
NGX
}

start_upstream() {	# $1 port: the upstream nginx serving $work/www, CPU 1
	nginx_conf upstream "server { listen 127.0.0.1:$1; root $work/www; default_type application/json; }"
	taskset -c 1 /usr/sbin/nginx -c "$work/upstream.conf" -p "$work" &
}

start_redis() {	# $1 cpu, $2 port, $3 dir, then more redis-server options; output in $work/redis.log
	mkdir -p "$3"
	taskset -c "$1" redis-server --port "$2" --bind 127.0.0.1 --dir "$3" \
		--save '' --appendonly no "${@:4}" > "$work/redis.log" 2>&1 &
}

tb_conf() {	# $1 file, $2 listen port, $3 admin port, [$4 [profiler] enabled, [$5 more sections]]
	# with $4: service "bench" and a [profiler] section writing to redis port $RP
	{
		cat <<CONF
[DEFAULT]
workers = 1
log_level = warning
[admin]
listen = 127.0.0.1:$3
[listener:bench]
listen = 127.0.0.1:$2
upstream = http://127.0.0.1:$UP
CONF
		if [ -n "${4:-}" ]; then
			cat <<CONF
service = bench
[profiler]
enabled = $4
hmac_keys = SECRET_KEY
connection_string = redis://127.0.0.1:$RP
CONF
		fi
		if [ -n "${5:-}" ]; then printf '%s\n' "$5"; fi
	} > "$1"
}

span_conf() {	# $1 file, $2 listen port, $3 admin port, $4 [profiler] enabled:
	# every request traced (sample_new = true, no cap), spans to redis port $RP
	tb_conf "$1" "$2" "$3" "$4" "[tracing]
sample_new = true
project = bench
host = bench-host
[sampling]
max_traces_per_second = 0"
}

start_tb() {	# $1 config [, $2 file for stderr]: tracebridge on CPU 0 in the background ($! is its pid)
	if [ -n "${2:-}" ]; then
		taskset -c 0 "$build/tracebridge" -f -c "$1" 2> "$2" &
	else
		taskset -c 0 "$build/tracebridge" -f -c "$1" &
	fi
	[ -z "${TB_CPU_QUOTA:-}" ] || cpu_cap $!
}

# TB_CPU_QUOTA=P: every tracebridge started by start_tb gets at most P % of
# one CPU (cgroup v1 cpu.cfs_quota_us, as root). On a 2-CPU machine the
# load generator, the upstream and Redis share one CPU and become the
# bottleneck; capping tracebridge makes it the bottleneck again, so that
# requests/s compare what tracebridge itself spends per request.
cpu_cap() {	# $1 pid
	local g=/sys/fs/cgroup/cpu/tb-bench-$$
	if [ ! -d "$g" ]; then
		mkdir -p "$g" && echo $((TB_CPU_QUOTA * 1000)) > "$g/cpu.cfs_quota_us" ||
			{ echo "TB_CPU_QUOTA needs cgroup v1's cpu controller at /sys/fs/cgroup/cpu" >&2; exit 1; }
		trap 'kill $(jobs -p) 2>/dev/null; sleep 0.3; rmdir '"$g"' 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
	fi
	echo "$1" > "$g/cgroup.procs"
}

get_v3() {	# $1 port [, $2 request header]: one GET /v3 by curl; sets head (CR stripped) and code
	head=$(curl -s -D - -o /dev/null ${2:+-H "$2"} "http://127.0.0.1:$1/v3" | tr -d '\r')
	code=$(printf '%s\n' "$head" | awk 'NR == 1 {print $2}')
}

need_200() {	# $1 what: exit unless the last get_v3 was answered 200
	[ "$code" = 200 ] || { echo "$1 answered ${code:-nothing}, not 200; see $work" >&2; exit 1; }
}

check_200() {	# $1 what, $2 port [, $3 request header]: exit unless GET /v3 answers 200
	get_v3 "$2" "${3:-}"
	need_200 "$1"
}

wrk_run() {	# $1 port [, $2 request header]: wrk on CPU 1 against /v3, output in $work/wrk.out;
	# sets rps, p99 (ms), nreq (requests completed) and non2xx (empty if none)
	taskset -c 1 wrk -t1 -c"$conns" -d"${secs}s" --latency ${2:+-H "$2"} \
		"http://127.0.0.1:$1/v3" > "$work/wrk.out"
	rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
	p99=$(awk '$1 == "99%" {v=$2; if (v ~ /ms$/) {sub("ms","",v)} else if (v ~ /us$/) {sub("us","",v); v=v/1000} else if (v ~ /s$/) {sub("s","",v); v=v*1000}; print v}' "$work/wrk.out")
	nreq=$(awk '/requests in/ {print $1}' "$work/wrk.out")
	non2xx=$(awk '/Non-2xx/ {print $NF}' "$work/wrk.out")
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }	# $1 pid -> utime + stime in clock ticks

cpu_us_per_request() {	# $1 ticks before, $2 ticks after, $3 requests -> CPU microseconds per request
	awk -v t=$(($2 - $1)) -v hz="$(getconf CLK_TCK)" -v n="$3" 'BEGIN {printf "%.2f", t / hz * 1e6 / n}'
}

summarize() {	# $1 results file ("mode value..." lines), more args for the script; stdin: Python
	# that prints the summary, with rows (the split lines), col(mode, i) (the
	# i-th values of mode's rows as floats) and med(mode, i) (their median)
	/usr/bin/python3 -c "import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def col(name, i):
    return [float(x[i]) for x in rows if x[0] == name]
def med(name, i):
    return statistics.median(col(name, i))
$(cat)" "$@"
}

# For the callgrind scripts: $TP is tracebridge's listener port.
wait_tb() {	# $1 pid: until the listener answers (valgrind starts slowly)
	for _ in $(seq 300); do
		kill -0 "$1" 2>/dev/null || { echo "tracebridge exited; see $work" >&2; exit 1; }
		code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$TP/v3" || true)
		[ "$code" = 200 ] && return 0
		sleep 0.2
	done
	echo "tracebridge not answering; see $work" >&2
	exit 1
}

stop_tb() {	# $1 pid: SIGTERM (drain), then wait
	kill -TERM "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
