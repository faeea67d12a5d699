#!/usr/bin/env bash
# tools/loadtest.sh — load test of `inspire-classifier serve` on loopback with wrk.
#
#   tools/loadtest.sh [--bin build/inspire-classifier] [--model M.safetensors] [--threads 2]
#                     [--connections 16] [--duration 30s] [--port 5077] [--papers 200] [--batch 1]
#
# Starts the server, waits for /api/health, then runs wrk (2 client threads, keep-alive) POSTing
# real records of the labeled valid split round-robin to /api/predict/coreness for the duration,
# while a side loop measures /api/health latency under that load. Prints wrk's latency
# percentiles and the health latencies, then stops the server with SIGTERM (it must exit 0).
# Exit status 1 if any request failed (non-200, socket error, timeout) or the server misbehaved.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="$ROOT/build/inspire-classifier"; MODEL=""; THREADS=2; CONNS=16; DUR=30s; PORT=5077; PAPERS=200; BATCH=1
while [ $# -gt 0 ]; do
  case "$1" in
    --bin) BIN="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --connections) CONNS="$2"; shift 2 ;;
    --duration) DUR="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --papers) PAPERS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "loadtest: unknown option $1" >&2; exit 2 ;;
  esac
done
command -v wrk >/dev/null || { echo "loadtest: wrk not found (apt-get install wrk)" >&2; exit 2; }
[ -x "$BIN" ] || { echo "loadtest: no binary at $BIN (build first, or pass --bin)" >&2; exit 2; }
DATA="$ROOT/../shared/data/labeled/inspire_labeled.jsonl"
TMP="$(mktemp -d)"; SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then kill -KILL "$SERVER_PID"; fi
  rm -rf "$TMP"
}
trap cleanup EXIT
awk -v n="$PAPERS" '/"split": "valid"/ && /"title"/ { print; if (++c >= n) exit }' "$DATA" > "$TMP/bodies.jsonl"
echo "loadtest: $(wc -l < "$TMP/bodies.jsonl") papers from the valid split; server: $THREADS worker thread(s), --batch $BATCH; wrk: $CONNS connections, $DUR"

"$BIN" serve --host 127.0.0.1 --port "$PORT" --threads "$THREADS" --batch "$BATCH" ${MODEL:+--model "$MODEL"} \
  > "$TMP/server.out" 2> "$TMP/server.err" &
SERVER_PID=$!
for i in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$PORT/api/health" > /dev/null 2>&1 && break
  kill -0 "$SERVER_PID" 2>/dev/null || { echo "loadtest: server died:"; cat "$TMP/server.err"; exit 1; }
  sleep 0.1
done
head -n1 "$TMP/server.out"

# Health latency under load (one probe every 0.5 s).
( while true; do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' "http://127.0.0.1:$PORT/api/health" >> "$TMP/health.txt" || true
    sleep 0.5
  done ) &
HEALTH_PID=$!

LOADTEST_BODIES="$TMP/bodies.jsonl" wrk -t2 -c"$CONNS" -d"$DUR" --timeout 30s --latency \
  -s "$ROOT/bench/loadtest.lua" "http://127.0.0.1:$PORT/api/predict/coreness" | tee "$TMP/wrk.txt"
kill "$HEALTH_PID" 2>/dev/null; wait "$HEALTH_PID" 2>/dev/null || true

fail=0
if grep -qE "Non-2xx|Socket errors" "$TMP/wrk.txt"; then echo "loadtest: FAILED requests (see above)"; fail=1; fi
if [ -s "$TMP/health.txt" ]; then
  sort -k2 -n "$TMP/health.txt" | awk '{ n++; t[n]=$2*1000; if ($1 != 200) bad++ }
    END { printf "health under load: %d probes, %d non-200, median %.1f ms, max %.1f ms\n",
          n, bad, t[int((n+1)/2)], t[n]; if (bad) exit 1 }' || fail=1
fi
kill -TERM "$SERVER_PID"
if wait "$SERVER_PID"; then echo "loadtest: server stopped cleanly on SIGTERM"; else echo "loadtest: server exit status $?"; fail=1; fi
SERVER_PID=""
tail -n1 "$TMP/server.err"
[ "$fail" = 0 ] && echo "loadtest: OK (zero errors)"
exit "$fail"
