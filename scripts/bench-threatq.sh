#!/bin/sh
# ThreatQ sink benchmark against the API simulator (tests/threatq_sim): requests, signatures sent
# and wall time for an initial import of the full ET Open Suricata 5.0 set (tests/corpus), an
# unchanged bundle and a one-day-changed bundle. batch_size 500, concurrency 2, no batch pause
# (the production default pauses 1-3 s between a worker's batches, threatq-api.md §4 #5).
set -eu
cd "$(dirname "$0")/.."
exec cargo test --quiet --test threatq_bench -- --ignored --nocapture --test-threads 1
