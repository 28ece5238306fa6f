#!/usr/bin/env bash
# Benchmark (not a test): etferry's air-gapped ingest against suricata-update on the same archive.
#
# Times, as whole processes, with /usr/bin/time (wall clock and peak RSS):
#   1. `etferry ingest` of a full ET Open bundle (the 2024 Suricata 5.0 corpus set) into an empty store;
#   2. `etferry ingest` of the next day's bundle into that store (rev bumps, new and disabled rules);
#   3. suricata-update (from PyPI, in a virtual environment) processing the same day-1 archive
#      offline: --no-test --no-reload --url file://…, with its own temp data and output dirs.
# Each is run RUNS times (default 3) and the median is reported, then the ratios.
#
# Usage: scripts/bench-ingest.sh            (env: RUNS, BENCH_VENV, CORPUS=dir holding rules/)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/etferry-bench/venv}
RUNS=${RUNS:-3}
TMP=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "== keeping $TMP"
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
if [ -z "${CORPUS:-}" ]; then
    # The repository's copy of the ET Open Suricata 5.0 set (tests/corpus/SOURCES.md).
    CORPUS=$TMP/corpus
    mkdir -p "$CORPUS"
    tar xzf "$ROOT/tests/corpus/et-open-suricata-5.0-2024-04-21/emerging.rules.tar.gz" -C "$CORPUS"
fi

[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }
[ -d "$CORPUS/rules" ] || { echo "corpus not found: $CORPUS/rules" >&2; exit 1; }
if [ ! -x "$VENV/bin/suricata-update" ]; then
    echo "== creating $VENV with suricata-update from PyPI"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet suricata-update
fi

echo "== building etferry (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN=$ROOT/target/release/etferry

echo "== preparing archives"
# Day 1: the ruleset as ET ships it, a tar.gz of rules/.
cp -r "$CORPUS" "$TMP/day1"
tar czf "$TMP/day1.tar.gz" -C "$TMP/day1" rules
# Day 2: a typical daily push: 200 rev bumps, 50 new rules, 20 rules disabled.
cp -r "$CORPUS" "$TMP/day2"
perl -pi -e 'if ($n < 200 && /^alert .*rev:(\d+);/) { $n++; s/rev:(\d+);/"rev:".($1+1).";"/e }' \
    "$TMP/day2/rules/emerging-info.rules"
for i in $(seq 0 49); do
    echo "alert http \$HOME_NET any -> \$EXTERNAL_NET any (msg:\"ET HUNTING bench new rule $i\"; flow:established,to_server; http.uri; content:\"/bench-$i\"; classtype:misc-activity; sid:$((2999000 + i)); rev:1;)"
done >> "$TMP/day2/rules/emerging-hunting.rules"
perl -pi -e 'if ($n < 20 && /^alert /) { $n++; s/^/#/ }' "$TMP/day2/rules/emerging-policy.rules"
tar czf "$TMP/day2.tar.gz" -C "$TMP/day2" rules

echo "== signing bundles"
for day in 1 2; do
    BENCH_KEYS="$TMP/keys" BENCH_OUT="$TMP/bundles" BENCH_ARCHIVE="$TMP/day$day.tar.gz" BENCH_SEQ=$day \
        cargo test --release --quiet --manifest-path "$ROOT/Cargo.toml" --test ingest_bench \
        -- --ignored --nocapture >"$TMP/sign.log" 2>&1 || { cat "$TMP/sign.log"; exit 1; }
done
B1=$TMP/bundles/et-open-suricata-5.0-00000001
B2=$TMP/bundles/et-open-suricata-5.0-00000002

mkdir -p "$TMP/cfg"
cat >"$TMP/cfg/watch.yaml" <<YAML
inbox: ../spool/inbox
work: ../spool/work
done: ../spool/done
failed: ../spool/failed
store: ../spool/etferry.db
trusted_keys: [../keys/bundle.pub]
YAML

# run LABEL CMD...: time one process; appends "wall rss" to $TMP/LABEL.
run() {
    local label=$1
    shift
    if ! /usr/bin/time -f "%e %M" -o "$TMP/t" "$@" >"$TMP/out" 2>&1; then
        echo "$label failed:" >&2
        cat "$TMP/out" "$TMP/t" >&2
        exit 1
    fi
    cat "$TMP/t" >>"$TMP/time-$label"
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for r in $(seq 1 "$RUNS"); do
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
echo
echo "== results (median of $RUNS runs; peak RSS in MiB)"
printf "%-44s %9s %10s\n" "process" "wall s" "peak RSS"
for l in etf1 etf2 su; do
    case $l in
        etf1) name="etferry ingest, day 1 into an empty store" ;;
        etf2) name="etferry ingest, day 2 into that store" ;;
        su) name="suricata-update, day-1 archive, offline" ;;
    esac
    printf "%-44s %9s %10.1f\n" "$name" "$(wall $l)" "$(echo "$(rss $l) / 1024" | bc -l)"
done
echo
echo "speed: suricata-update / etferry day 1 = $(echo "scale=1; $(wall su) / $(wall etf1)" | bc -l)x" \
    " (day 2: $(echo "scale=1; $(wall su) / $(wall etf2)" | bc -l)x)"
echo "memory: etferry day 1 peak RSS / suricata-update = $(echo "scale=2; $(rss etf1) / $(rss su)" | bc -l)" \
    " (day 2: $(echo "scale=2; $(rss etf2) / $(rss su)" | bc -l))"
