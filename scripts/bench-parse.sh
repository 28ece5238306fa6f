#!/usr/bin/env bash
# Benchmark: `etferry parse` against suricata-update's rule parser on the same input.
#
# Input: every .rules file of the ET Open Suricata 5.0 set (tests/corpus) concatenated (1x) and
# a 10x copy, in a temporary directory. Each parser runs as a whole process (start-up included);
# wall time, CPU time (user + system) and peak RSS come from wait4(2) on that process. Best of $RUNS
# runs (by wall time) is reported. On a busy machine wall time mostly measures the wait for a core,
# so the CPU-time rate and ratio are printed too.
#
# Usage: scripts/bench-parse.sh            (env: SU_VENV=dir to reuse a venv, RUNS=3, CORPUS=dir)
# Needs: cargo, python3 (with venv), network access to PyPI the first time the venv is created.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${SU_VENV:-/tmp/su-venv}"
runs="${RUNS:-3}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -z "${CORPUS:-}" ]; then
    tar xzf "$root/tests/corpus/et-open-suricata-5.0-2024-04-21/emerging.rules.tar.gz" -C "$work"
    corpus="$work/rules"
else
    corpus="$CORPUS"
fi

[ -d "$corpus" ] || { echo "bench-parse: corpus not found: $corpus" >&2; exit 1; }

echo "== building release binary" >&2
(cd "$root" && cargo build --release --quiet)
# The binary is where cargo put it: $CARGO_TARGET_DIR when set, else the repository's target/.
etferry="${CARGO_TARGET_DIR:-$root/target}/release/etferry"

if ! "$venv/bin/python" -c 'import suricata.update.rule' 2>/dev/null; then
    echo "== creating venv with suricata-update in $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet suricata-update
fi
su_version="$("$venv/bin/python" -c 'import suricata.update.version as v; print(v.version)')"

cat "$corpus"/*.rules > "$work/et-1x.rules"
for _ in $(seq 10); do cat "$work/et-1x.rules"; done > "$work/et-10x.rules"

cat > "$work/su_parse.py" <<'PY'
import sys
from suricata.update import rule
with open(sys.argv[1], encoding="utf-8") as f:
    rules = rule.parse_fileobj(f)
print(len(rules))
PY

# Run a command $runs times; print "<rules> <wall s> <cpu s> <peak RSS KiB>" of the fastest run.
# The rule count is the last line of stdout, or the "rules" field of a JSON object.
cat > "$work/measure.py" <<'PY'
import json, os, subprocess, sys, time
runs, cmd = int(sys.argv[1]), sys.argv[2:]
best = None
for _ in range(runs):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"{cmd[0]} failed with status {status}")
    text = out.decode().strip().splitlines()[-1]
    n = json.loads(text)["rules"] if text.startswith("{") else int(text)
    if best is None or dt < best[1]:
        best = (n, dt, ru.ru_utime + ru.ru_stime, ru.ru_maxrss)
print(*best)
PY

printf '%-5s %-16s %8s %8s %8s %12s %12s %10s\n' input parser rules wall_s cpu_s rules/s cpu_rules/s peak_RSS
for input in 1x 10x; do
    file="$work/et-$input.rules"
    read -r su_n su_t su_c su_rss < <(python3 "$work/measure.py" "$runs" "$venv/bin/python" "$work/su_parse.py" "$file")
    read -r ef_n ef_t ef_c ef_rss < <(python3 "$work/measure.py" "$runs" "$etferry" parse --json "$file")
    for row in "suricata-update:$su_n:$su_t:$su_c:$su_rss" "etferry:$ef_n:$ef_t:$ef_c:$ef_rss"; do
        IFS=: read -r name n t c rss <<<"$row"
        printf '%-5s %-16s %8d %8.3f %8.3f %12.0f %12.0f %6.1f MiB\n' "$input" "$name" "$n" "$t" "$c" \
            "$(awk "BEGIN{print $n / $t}")" "$(awk "BEGIN{print $n / $c}")" "$(awk "BEGIN{print $rss / 1024}")"
    done
    printf '%-5s ratio etferry/suricata-update: %.1fx rules/s (wall), %.1fx (cpu); peak RSS %s\n' "$input" \
        "$(awk "BEGIN{print ($ef_n / $ef_t) / ($su_n / $su_t)}")" \
        "$(awk "BEGIN{print ($ef_n / $ef_c) / ($su_n / $su_c)}")" \
        "$([ "$ef_rss" -lt "$su_rss" ] && echo "lower (etferry)" || echo "NOT lower")"
    if [ "$su_n" != "$ef_n" ]; then
        echo "$input: rule counts differ: suricata-update $su_n, etferry $ef_n" >&2
    fi
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(suricata-update $su_version, $(nproc) CPUs, best of $runs runs, whole processes)"
