#!/bin/bash
# Benchmark: instructions and syscalls tracebridge spends per proxied request
# with every request traced and its span recorded into Redis ("traced"),
# against [profiler] enabled = false ("plain"). Deterministic counts, not
# wall clock: on a shared 2-CPU machine requests/s is mostly noise, while
# callgrind's instruction count (Ir) barely moves between runs.
# Run by hand (not in CI), loopback only:
#   bench/span_instructions.sh [BUILD_DIR] [REQUESTS] [CONNECTIONS]
# (defaults: _build, 20000, 8). Same configurations as
# bench/span_overhead.sh, nginx upstream serving a small static JSON and a
# local redis-server. Per mode:
#   1. tracebridge (1 worker) under valgrind --tool=callgrind; a fixed-count
#      keep-alive client sends 1000 warm-up requests, the counters are zeroed
#      (callgrind_control -z), REQUESTS more are sent over CONNECTIONS
#      connections, the span buffer gets a moment to drain, and the counters
#      are dumped: Ir / REQUESTS, all threads, user space only;
#   2. tracebridge natively under strace -c -f (attached after the warm-up):
#      syscalls / REQUESTS, and the five most frequent.
# STRACE_OPTS replaces strace's -c (e.g. STRACE_OPTS="-e trace=epoll_ctl" with
# KEEP=1 keeps every such call in strace.MODE; the summary line is then empty).
# The callgrind dumps stay in the temp dir with KEEP=1
# (callgrind_annotate --inclusive=yes FILE for the breakdown).
#
# Two runs of the same binary differ by about 1% in traced Ir (how many
# spans share one Redis write and one epoll_wait varies); compare
# functions with callgrind_annotate for smaller effects.
#
# Results on the 2-vCPU VM (valgrind 3.19, gcc 12 -O2), 20000 requests
# over 8 connections, two runs each:
#   7e178ca: plain 24,777 / 24,876 Ir/request, traced 44,392 / 44,785
#            (+79%); syscalls plain 10.52, traced 11.06 / 10.92 per request
#            (traced: + one write and one read per batch of spans, and
#            epoll_ctl 4.00 -> 4.3 for the Redis connection's events)
#   27ab814: plain 25,192 / 24,805, traced 41,310 / 40,915 (+64%, the
#            extra per traced request 19.6k -> 16.1k Ir); syscalls plain
#            10.50, traced 10.72 / 11.22 (unchanged: the batching decides
#            them, and how many spans one batch holds varies with timing)
#   60a145c (the sink writes a batch at once, 2026-12-01): plain 24,831,
#            traced 40,752 Ir/request; syscalls 6.26 vs 6.57 per request
#            (the changelist since 7e178ca: epoll_ctl plain 0.00, traced
#            0.24 -> 0.10; what is left is hiredis' adapter re-adding its
#            non-persistent read event after each batch of replies)
#   Of the remaining extra, ~3.9k is HMAC-SHA1 in libcrypto (4 blocks;
#   the host has SHA-NI, which valgrind's CPU most likely does not offer
#   OpenSSL, so natively it is probably cheaper), ~4.9k span JSON, ~1.1k
#   hiredis per command and ~0.5k per reply.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/bench/lib.sh"
bench_init tb-insn-bench 1 "${1:-$top/_build}"
nreq=${2:-20000}
nconn=${3:-8}

UP=$(port); RP=$(port); TP=$(port); AP=$(port)
span_conf "$work/traced.conf" "$TP" "$AP" true
span_conf "$work/plain.conf" "$TP" "$AP" false

start_redis 1 "$RP" "$work" --daemonize no --loglevel warning
start_upstream "$UP"
sleep 0.5
check_200 upstream "$UP"

# The client: CONNECTIONS keep-alive connections, one request in flight on
# each, until COUNT responses have been read; exits 1 on anything but 200.
client() { /usr/bin/python3 "$top/bench/fixed_client.py" "$TP" "$1" "$nconn"; }

for mode in plain traced; do
	valgrind --tool=callgrind --callgrind-out-file="$work/cg.$mode" \
		"$build/tracebridge" -f -c "$work/$mode.conf" 2> "$work/vg.$mode.log" &
	pid=$!
	wait_tb "$pid"
	client 1000
	callgrind_control -z "$pid" > /dev/null 2>&1
	client "$nreq"
	sleep 1		# the batch timer writes the last spans, Redis answers
	callgrind_control -d "$mode" "$pid" > /dev/null 2>&1
	stop_tb "$pid"
	dump=$(ls "$work/cg.$mode".* | head -1)
	ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$dump")
	echo "$mode ir $ir" >> "$work/results"

	"$build/tracebridge" -f -c "$work/$mode.conf" 2> "$work/tb.$mode.log" &
	pid=$!
	wait_tb "$pid"
	client 1000
	strace ${STRACE_OPTS:--c} -f -q -p "$pid" -o "$work/strace.$mode" &
	spid=$!
	sleep 0.5	# attached to every thread
	client "$nreq"
	sleep 0.5
	kill -INT "$spid"
	wait "$spid" || true
	stop_tb "$pid"
	# columns: % time, seconds, usecs/call, calls, [errors], syscall
	calls=$(awk '$NF == "total" {print $4}' "$work/strace.$mode")
	echo "$mode sys $calls" >> "$work/results"
	awk 'NR > 2 && $1 !~ /^-/ && $NF != "total" {print $4, $NF}' \
		"$work/strace.$mode" | sort -rn | head -5 > "$work/top.$mode"
done

keys=$(redis-cli -p "$RP" dbsize)
summarize "$work/results" "$nreq" "$keys" "$work" <<'PY'
n = float(sys.argv[2])
v = {(x[0], x[1]): float(x[2]) for x in rows}
for m in ("plain", "traced"):
    top = ", ".join("%s %.2f" % (l.split()[1], float(l.split()[0]) / n)
                    for l in open("%s/top.%s" % (sys.argv[4], m)))
    print("%-7s %8.0f Ir/request   %5.2f syscalls/request (%s)"
          % (m, v[(m, "ir")] / n, v[(m, "sys")] / n, top))
print("traced/plain: %.3f by Ir, %.3f by syscalls; traces in Redis: %s"
      % (v[("traced", "ir")] / v[("plain", "ir")],
         v[("traced", "sys")] / v[("plain", "sys")], sys.argv[3]))
PY
