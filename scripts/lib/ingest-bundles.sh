# Sourced by scripts/bench-ingest.sh and scripts/compare-stores.sh: the same day-1 and day-2
# rulesets and signed bundles for both, so their figures talk about the same input.
# Needs ROOT (the repository) and TMP (a work directory) set by the caller.

# ingest_days CORPUS: $TMP/day1 (the set as ET ships it) and $TMP/day2 (a typical daily push: 200
# rev bumps, 50 new rules, 20 rules disabled), each as a directory holding rules/ and a .tar.gz.
ingest_days() {
    cp -r "$1" "$TMP/day1"
    cp -r "$1" "$TMP/day2"
    perl -pi -e 'if ($n < 200 && /^alert .*rev:(\d+);/) { $n++; s/rev:(\d+);/"rev:".($1+1).";"/e }' \
        "$TMP/day2/rules/emerging-info.rules"
    for i in $(seq 0 49); do
        echo "alert http \$HOME_NET any -> \$EXTERNAL_NET any (msg:\"ET HUNTING bench new rule $i\"; flow:established,to_server; http.uri; content:\"/bench-$i\"; classtype:misc-activity; sid:$((2999000 + i)); rev:1;)"
    done >>"$TMP/day2/rules/emerging-hunting.rules"
    perl -pi -e 'if ($n < 20 && /^alert /) { $n++; s/^/#/ }' "$TMP/day2/rules/emerging-policy.rules"
    for day in 1 2; do
        tar czf "$TMP/day$day.tar.gz" -C "$TMP/day$day" rules
    done
}

# sign_days N...: signed bundles of $TMP/dayN.tar.gz, sequence N, in $TMP/bundles (keys in
# $TMP/keys), made by the ignored test tests/ingest_bench.rs.
sign_days() {
    local day
    for day in "$@"; do
        BENCH_KEYS="$TMP/keys" BENCH_OUT="$TMP/bundles" BENCH_ARCHIVE="$TMP/day$day.tar.gz" BENCH_SEQ=$day \
            cargo test --release --quiet --manifest-path "$ROOT/Cargo.toml" --test ingest_bench \
            -- --ignored --nocapture >"$TMP/sign.log" 2>&1 || { cat "$TMP/sign.log"; exit 1; }
    done
}

# watch_config: $TMP/cfg/watch.yaml for a spool and store under $TMP/spool, trusting $TMP/keys.
watch_config() {
    mkdir -p "$TMP/cfg"
    cat >"$TMP/cfg/watch.yaml" <<YAML
inbox: ../spool/inbox
work: ../spool/work
done: ../spool/done
failed: ../spool/failed
store: ../spool/etferry.db
trusted_keys: [../keys/bundle.pub]
YAML
}
