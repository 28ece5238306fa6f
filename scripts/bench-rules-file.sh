#!/usr/bin/env bash
# Benchmark (not a test): writing the sensors' rules file for the full ET Open set, against
# suricata-update 1.3 doing the same job on the same archive with the same policy files.
#
# Times, as whole processes, with /usr/bin/time (wall clock and peak RSS):
#   1. `etferry export rules_file` on a store holding the full ET Open 5.0 set: read the stored
#      payload, parse, apply disable/enable/drop/modify, resolve flowbits, write suricata.rules and
#      sid-msg.map atomically (forced rewrite);
#   2. suricata-update 1.3 (PyPI, in a virtual environment), offline from its cache, with
#      --no-test --no-reload and the same four policy files (the baseline).
# Each is run RUNS times (default 5) and the median is reported, then the ratio. The two
# outputs are compared (they must be identical) so that the figures are for the same work.
#
# Usage: scripts/bench-rules-file.sh   (env: RUNS, BENCH_VENV, CORPUS = a directory holding rules/)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${CORPUS:-$ROOT/tests/corpus/et-open-suricata-5.0-2024-04-21}
VENV=${BENCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/etferry-bench/venv-su13}
RUNS=${RUNS:-5}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

[ -x /usr/bin/time ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 1; }
[ -d "$CORPUS/rules" ] || { echo "corpus not found: $CORPUS/rules (set CORPUS)" >&2; exit 1; }
if [ ! -x "$VENV/bin/suricata-update" ]; then
    echo "== creating $VENV with suricata-update 1.3 from PyPI"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "suricata-update==1.3.*"
fi

echo "== building etferry (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN=$TARGET/release/etferry

echo "== preparing the archive, a signed bundle and the store"
cp -r "$CORPUS" "$TMP/et"
tar czf "$TMP/emerging.rules.tar.gz" -C "$TMP/et" rules
BENCH_KEYS="$TMP/keys" BENCH_OUT="$TMP/bundles" BENCH_ARCHIVE="$TMP/emerging.rules.tar.gz" BENCH_SEQ=1 \
    cargo test --release --quiet --manifest-path "$ROOT/Cargo.toml" --test ingest_bench \
    -- --ignored --nocapture >"$TMP/sign.log" 2>&1 || { cat "$TMP/sign.log"; exit 1; }

mkdir -p "$TMP/cfg"
# A policy an operator might keep: whole groups off, a metadata class off, groups on, drops,
# modifications with capture groups.
cat >"$TMP/cfg/disable.conf" <<'EOF'
group:emerging-games
group:emerging-inappropriate
metadata: signature_severity Informational
re:ET POLICY .*Dropbox
2101948
EOF
cat >"$TMP/cfg/enable.conf" <<'EOF'
group:emerging-hunting
re:ET INFO .*Observed
EOF
cat >"$TMP/cfg/drop.conf" <<'EOF'
group:emerging-exploit_kit
re:ET MALWARE .*CnC
EOF
cat >"$TMP/cfg/modify.conf" <<'EOF'
"re:ET SCAN" "(msg:\"ET SCAN)" "\1 [tuned]"
group:emerging-dns "(content:\"[^\"]*\"); (nocase;)" "\1; fast_pattern; \2"
EOF
cat >"$TMP/cfg/watch.yaml" <<YAML
inbox: ../spool/inbox
work: ../spool/work
done: ../spool/done
failed: ../spool/failed
store: ../spool/etferry.db
trusted_keys: [../keys/bundle.pub]
sinks:
  rules_file:
    path: ../out/suricata.rules
    sid_msg_map: ../out/sid-msg.map
    disable_conf: disable.conf
    enable_conf: enable.conf
    drop_conf: drop.conf
    modify_conf: modify.conf
YAML
"$BIN" -c "$TMP/cfg/watch.yaml" ingest "$TMP/bundles/et-open-suricata-5.0-00000001" >"$TMP/ingest.log" 2>&1 \
    || { cat "$TMP/ingest.log"; exit 1; }

# suricata-update reads the archive from its download cache, as after an earlier online run.
URL="https://rules.emergingthreats.net/open/suricata-5.0/emerging.rules.tar.gz"
mkdir -p "$TMP/su/data/update/cache"
cp "$TMP/emerging.rules.tar.gz" "$TMP/su/data/update/cache/$(printf '%s' "$URL" | md5sum | cut -d' ' -f1)-emerging.rules.tar.gz"
printf 'ignore:\n  - "*deleted.rules"\n' >"$TMP/su/update.yaml"

# run LABEL CMD...: time one process; appends "wall rss" to $TMP/time-LABEL.
run() {
    local label=$1
    shift
    if ! /usr/bin/time -f "%e %M %U %S" -o "$TMP/t" "$@" >"$TMP/log" 2>&1; then
        echo "$label failed:" >&2
        cat "$TMP/log" "$TMP/t" >&2
        exit 1
    fi
    cat "$TMP/t" >>"$TMP/time-$label"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

for r in $(seq 1 "$RUNS"); do
    run etf "$BIN" -c "$TMP/cfg/watch.yaml" export rules_file
    [ "$r" = 1 ] && { echo "-- etferry:"; cat "$TMP/log"; }
    rm -rf "$TMP/su/out"
    # PATH holds only the venv, so no installed Suricata changes suricata-update's output.
    run su env PATH="$VENV/bin" "$VENV/bin/suricata-update" -c "$TMP/su/update.yaml" -D "$TMP/su/data" \
        --url "$URL" --offline --no-test --no-reload -o "$TMP/su/out" --sid-msg-map "$TMP/su/out/sid-msg.map" \
        --disable-conf "$TMP/cfg/disable.conf" --enable-conf "$TMP/cfg/enable.conf" \
        --drop-conf "$TMP/cfg/drop.conf" --modify-conf "$TMP/cfg/modify.conf"
    [ "$r" = 1 ] && { echo "-- suricata-update:"; grep -E "Disabled|Enabled|Modified|Dropped|Writing rules" "$TMP/log" || true; }
done

if cmp -s "$TMP/out/suricata.rules" "$TMP/su/out/suricata.rules"; then
    echo "outputs: suricata.rules identical ($(wc -l <"$TMP/out/suricata.rules") lines)"
else
    echo "outputs: suricata.rules DIFFER" >&2
    exit 1
fi

wall() { cut -d' ' -f1 "$TMP/time-$1" | median; }
rss() { cut -d' ' -f2 "$TMP/time-$1" | median; }
# CPU seconds (user + system): what the process itself costs on a busy, shared machine.
cpu() { awk '{print $3 + $4}' "$TMP/time-$1" | median; }
echo
echo "== results (median of $RUNS runs; peak RSS in MiB)"
printf "%-58s %9s %9s %10s\n" "process" "wall s" "CPU s" "peak RSS"
printf "%-58s %9s %9s %10.1f\n" "etferry export rules_file (full ET Open 5.0, policy)" "$(wall etf)" "$(cpu etf)" "$(echo "$(rss etf) / 1024" | bc -l)"
printf "%-58s %9s %9s %10.1f\n" "suricata-update 1.3 --offline, same archive and policy" "$(wall su)" "$(cpu su)" "$(echo "$(rss su) / 1024" | bc -l)"
echo
echo "speed: suricata-update / etferry = $(echo "scale=1; $(wall su) / $(wall etf)" | bc -l)x wall," \
    "$(echo "scale=1; $(cpu su) / $(cpu etf)" | bc -l)x CPU (load average: $(cut -d' ' -f1 /proc/loadavg))"
