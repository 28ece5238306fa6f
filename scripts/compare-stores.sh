#!/usr/bin/env bash
# Check (not a test): an older etferry build and this one write the same store.
#
# Four signed bundles made from the ET Open Suricata 5.0 set in tests/corpus are ingested in a row
# by each build into a fresh store: day 1 (the set as ET ships it), day 2 (200 rev bumps, 50 new
# rules, 20 rules disabled), day 3 (30 rules removed, 10 msgs changed without a rev bump, 5 rules
# moved to another file), day 4 (a duplicate sid with a higher rev in another file). Then every
# table that holds what was stored is dumped (rules, history, payload file names and hashes,
# indicators, sources, bundles, journal stages, and each change report as parsed JSON, so key order
# does not matter; times and row ids are left out) and the two dumps are compared.
#
# Usage: scripts/compare-stores.sh BASELINE_BIN    (env: KEEP=1 keeps the work directory)
set -euo pipefail

BASE=${1:?usage: scripts/compare-stores.sh BASELINE_BIN}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d)
trap '[ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
[ -n "${KEEP:-}" ] && echo "== keeping $TMP"

echo "== building etferry (release)"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml"
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release/etferry

echo "== preparing archives"
mkdir -p "$TMP/corpus"
tar xzf "$ROOT/tests/corpus/et-open-suricata-5.0-2024-04-21/emerging.rules.tar.gz" -C "$TMP/corpus"
# shellcheck source=lib/ingest-bundles.sh
. "$ROOT/scripts/lib/ingest-bundles.sh"
ingest_days "$TMP/corpus"
cp -r "$TMP/day2" "$TMP/day3"
python3 - "$TMP/day3/rules" <<'PY'
import sys
d = sys.argv[1]
lines = open(f"{d}/emerging-exploit.rules").read().split("\n")
out, removed, moved, changed = [], 0, [], 0
for l in lines:
    if l.startswith("alert ") and removed < 30:
        removed += 1
        continue
    if l.startswith("alert ") and len(moved) < 5:
        moved.append(l)
        continue
    if l.startswith("alert ") and changed < 10 and 'msg:"' in l:
        l = l.replace('msg:"', 'msg:"CHANGED ', 1)
        changed += 1
    out.append(l)
open(f"{d}/emerging-exploit.rules", "w").write("\n".join(out))
with open(f"{d}/emerging-scan.rules", "a") as f:
    f.write("\n" + "\n".join(moved) + "\n")
PY
cp -r "$TMP/day3" "$TMP/day4"
python3 - "$TMP/day4/rules" <<'PY'
import re, sys
d = sys.argv[1]
for l in open(f"{d}/emerging-scan.rules"):
    if l.startswith("alert ") and "sid:" in l:
        dup = re.sub(r"rev:(\d+);", lambda m: "rev:%d;" % (int(m.group(1)) + 5), l)
        break
open(f"{d}/emerging-hunting.rules", "a").write(dup)
PY
for day in 3 4; do
    tar czf "$TMP/day$day.tar.gz" -C "$TMP/day$day" rules
done

echo "== signing bundles"
sign_days 1 2 3 4

watch_config

cat >"$TMP/dump.py" <<'PY'
import gzip, json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
q = lambda sql: [list(r) for r in c.execute(sql)]
tables = {
    "rules": q("SELECT source, gid, sid, rev, msg, text, text_hash, enabled, removed, classtype,"
               " category, file, bundle FROM rules ORDER BY source, gid, sid"),
    "history": sorted(q("SELECT source, gid, sid, bundle, change, rev, enabled, text_hash,"
                        " previous_text FROM rule_history")),
    "payload": q("SELECT source, name, sha256, bundle, length(data) FROM payload_files"
                 " ORDER BY source, seq"),
    "indicators": q("SELECT source, value, kind, section, file, bundle FROM indicators"
                    " ORDER BY 1, 2, 4"),
    "sources": q("SELECT name, ruleset, engine, last_sequence, last_bundle, lifetime_secs"
                 " FROM sources ORDER BY 1"),
    "bundles": q("SELECT id, source, sequence, stage, status, reason FROM bundles ORDER BY 1"),
    "journal": q("SELECT bundle, stage, detail FROM journal ORDER BY id"),
    "reports": [[b, json.loads(gzip.decompress(r))]
                for b, r in c.execute("SELECT bundle, report FROM reports ORDER BY bundle")],
}
for name, rows in tables.items():
    print("==", name, len(rows))
    for r in rows:
        print(json.dumps(r, sort_keys=True))
PY

for who in baseline this; do
    bin=$BIN
    [ "$who" = baseline ] && bin=$BASE
    rm -rf "$TMP/spool"
    for day in 1 2 3 4; do
        "$bin" -c "$TMP/cfg/watch.yaml" ingest "$TMP/bundles/et-open-suricata-5.0-0000000$day" \
            >"$TMP/out-$who-$day" 2>&1 || { echo "$who, day $day failed:"; cat "$TMP/out-$who-$day"; exit 1; }
    done
    python3 "$TMP/dump.py" "$TMP/spool/etferry.db" >"$TMP/dump-$who.txt"
done

echo "-- this build, day by day:"
cat "$TMP"/out-this-*
grep '^==' "$TMP/dump-this.txt" | tr '\n' ' '
echo
if cmp -s "$TMP/dump-baseline.txt" "$TMP/dump-this.txt"; then
    echo "compare-stores: identical ($(wc -l <"$TMP/dump-this.txt") lines)"
else
    echo "compare-stores: the stores differ:"
    diff "$TMP/dump-baseline.txt" "$TMP/dump-this.txt" | head -40
    exit 1
fi
