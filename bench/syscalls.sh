#!/bin/bash
# Syscalls per 64 KiB request through each proxy (issue 11): the "syscalls"
# section of bench/bulk.sh, alone. Run by hand, as root:
#   bench/syscalls.sh                 SYS_N=200 GET /64k per proxy and mode
#   TB_BIN=... TB_BIN_B=... bench/syscalls.sh
# strace -c -f is attached to each proxy (tracebridge untraced and traced,
# nginx's worker, HAProxy plain and splice-auto) while the requests go
# through it, once over one keep-alive connection and once with
# Connection: close; calls per request are printed by name.
exec env SECTIONS=syscalls SIZE="${SIZE:-1M}" "$(dirname "$0")/bulk.sh"
