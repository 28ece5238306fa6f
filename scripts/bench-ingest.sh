#!/usr/bin/env bash
# Benchmark (not a test): etferry's air-gapped ingest against suricata-update on the same archive.
#
# Times, as whole processes (wall clock from a monotonic clock, peak RSS and CPU from wait4(2)):
#   1. `etferry ingest` of a full ET Open bundle (the 2024 Suricata 5.0 corpus set) into an empty store;
#   2. `etferry ingest` of the next day's bundle into that store (rev bumps, new and disabled rules);
#   3. suricata-update (from PyPI, in a virtual environment) processing the same day-1 archive
#      offline: --no-test --no-reload --url file://…, with its own temp data and output dirs.
# Each is run RUNS times (default 5), interleaved, and the median is reported, then the ratios
# (and the day-1 and day-2 speed ratios round by round, lowest to highest: the machine's noise).
# BASELINE_BIN=path/to/an/older/etferry adds its day-1 and day-2 rows (the same bundles) for a
# before/after comparison in the same run. Last, one day-1 and one day-2 run with ETFERRY_TIMINGS=1
# print where the time and memory go (stage marks, and the work that overlaps).
#
# Usage: scripts/bench-ingest.sh   (env: RUNS, BENCH_VENV, CORPUS=dir holding rules/, BASELINE_BIN, KEEP=1)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/etferry-bench/venv}
RUNS=${RUNS:-5}
TMP=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "== keeping $TMP"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
if [ -z "${CORPUS:-}" ]; then
    # The repository's copy of the ET Open Suricata 5.0 set (tests/corpus/SOURCES.md).
    CORPUS=$TMP/corpus
    mkdir -p "$CORPUS"
    tar xzf "$ROOT/tests/corpus/et-open-suricata-5.0-2024-04-21/emerging.rules.tar.gz" -C "$CORPUS"
fi

[ -d "$CORPUS/rules" ] || { echo "corpus not found: $CORPUS/rules" >&2; exit 1; }
if [ ! -x "$VENV/bin/suricata-update" ]; then
    echo "== creating $VENV with suricata-update from PyPI"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet suricata-update
fi

echo "== building etferry (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/etferry

echo "== preparing archives"
# shellcheck source=lib/ingest-bundles.sh
. "$ROOT/scripts/lib/ingest-bundles.sh"
ingest_days "$CORPUS"

echo "== signing bundles"
sign_days 1 2
B1=$TMP/bundles/et-open-suricata-5.0-00000001
B2=$TMP/bundles/et-open-suricata-5.0-00000002

watch_config

# A process's wall seconds (monotonic clock, around fork/exec/wait), CPU seconds and peak RSS
# (KiB, from wait4), like /usr/bin/time but to the microsecond.
cat >"$TMP/measure.py" <<'PY'
import os, subprocess, sys, time
out = open(sys.argv[1], "w")
t0 = time.perf_counter()
p = subprocess.Popen(sys.argv[2:], stdout=out, stderr=subprocess.STDOUT)
_, status, ru = os.wait4(p.pid, 0)
dt = time.perf_counter() - t0
print(f"{dt:.4f} {ru.ru_maxrss} {ru.ru_utime + ru.ru_stime:.4f}")
sys.exit(0 if status == 0 else 1)
PY

# run LABEL CMD...: time one process; appends "wall rss cpu" to $TMP/time-LABEL.
run() {
    local label=$1
    shift
    if ! python3 "$TMP/measure.py" "$TMP/out" "$@" >"$TMP/t"; then
        echo "$label failed:" >&2
        cat "$TMP/out" >&2
        exit 1
    fi
    cat "$TMP/t" >>"$TMP/time-$label"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

labels="etf1 etf2 su"
[ -n "${BASELINE_BIN:-}" ] && labels="base1 base2 $labels"
for r in $(seq 1 "$RUNS"); do
    if [ -n "${BASELINE_BIN:-}" ]; then
        rm -rf "$TMP/spool"
        run base1 "$BASELINE_BIN" -c "$TMP/cfg/watch.yaml" ingest "$B1"
        run base2 "$BASELINE_BIN" -c "$TMP/cfg/watch.yaml" ingest "$B2"
    fi
    rm -rf "$TMP/spool"
    run etf1 "$BIN" -c "$TMP/cfg/watch.yaml" ingest "$B1"
    [ "$r" = 1 ] && { echo "-- etferry day 1:"; cat "$TMP/out"; }
    run etf2 "$BIN" -c "$TMP/cfg/watch.yaml" ingest "$B2"
    [ "$r" = 1 ] && { echo "-- etferry day 2:"; cat "$TMP/out"; }
    rm -rf "$TMP/su"
    run su "$VENV/bin/suricata-update" --no-test --no-reload --suricata-version 5.0.0 \
        --url "file://$TMP/day1.tar.gz" -D "$TMP/su/data" -o "$TMP/su/out"
    [ "$r" = 1 ] && { echo "-- suricata-update:"; grep -E "Loaded|Writing rules" "$TMP/out" || true; }
done

wall() { cut -d' ' -f1 "$TMP/time-$1" | median; }
rss() { cut -d' ' -f2 "$TMP/time-$1" | median; }
cpu() { cut -d' ' -f3 "$TMP/time-$1" | median; }
echo
echo "== results (median of $RUNS runs; peak RSS in MiB)"
printf "%-46s %8s %8s %10s\n" "process" "wall s" "CPU s" "peak RSS"
for l in $labels; do
    case $l in
        base1) name="baseline etferry, day 1 into an empty store" ;;
        base2) name="baseline etferry, day 2 into that store" ;;
        etf1) name="etferry ingest, day 1 into an empty store" ;;
        etf2) name="etferry ingest, day 2 into that store" ;;
        su) name="suricata-update, day-1 archive, offline" ;;
    esac
    printf "%-46s %8.3f %8.3f %10.1f\n" "$name" "$(wall $l)" "$(cpu $l)" "$(echo "$(rss $l) / 1024" | bc -l)"
done
echo
# Rounded, not truncated: bc with scale=1 printed equal times as .9x.
ratio() { printf "%.1f" "$(echo "$1 / $2" | bc -l)"; }
frac() { echo "scale=3; $1 / $2" | bc -l; }
echo "speed: suricata-update / etferry day 1 = $(ratio "$(wall su)" "$(wall etf1)")x" \
    " (day 2: $(ratio "$(wall su)" "$(wall etf2)")x)"
# The same ratio round by round (the runs of a round are back to back): how far the machine's
# load moves it.
spread() {
    paste -d' ' <(cut -d' ' -f1 "$TMP/time-su") <(cut -d' ' -f1 "$TMP/time-$1") |
        awk '{print $1 / $2}' | sort -n | awk '{a[NR]=$1} END {printf "%.1f-%.1f", a[1], a[NR]}'
}
echo "speed, round by round: day 1 $(spread etf1)x, day 2 $(spread etf2)x"
echo "memory: etferry day 1 peak RSS / suricata-update = $(frac "$(rss etf1)" "$(rss su)")" \
    " (day 2: $(frac "$(rss etf2)" "$(rss su)"))"
if [ -n "${BASELINE_BIN:-}" ]; then
    echo "against the baseline: day 1 $(ratio "$(wall base1)" "$(wall etf1)")x faster at" \
        "$(frac "$(rss etf1)" "$(rss base1)") of its memory; day 2 $(ratio "$(wall base2)" "$(wall etf2)")x" \
        "at $(frac "$(rss etf2)" "$(rss base2)")"
fi
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs)"

echo
echo "== where the time goes (ETFERRY_TIMINGS=1, one run each)"
rm -rf "$TMP/spool"
echo "-- day 1"
ETFERRY_TIMINGS=1 "$BIN" -c "$TMP/cfg/watch.yaml" ingest "$B1" 2>&1 >/dev/null | sed -n '/^timings/,$p'
echo "-- day 2"
ETFERRY_TIMINGS=1 "$BIN" -c "$TMP/cfg/watch.yaml" ingest "$B2" 2>&1 >/dev/null | sed -n '/^timings/,$p'
