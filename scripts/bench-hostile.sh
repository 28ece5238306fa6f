#!/usr/bin/env bash
# Peak RSS and wall time of `etferry fetch` against three hostile mirrors (issue 18):
#   endless  - the archive body never ends (no Content-Length)
#   md5-1g   - the .md5 announces and sends 1 GiB
#   drip     - the archive arrives at 1 byte per 5 s, with total_timeout: 1m
# Usage: scripts/bench-hostile.sh path/to/etferry [case ...]   (default: all three)
# Runs a loopback server (python3) on 127.0.0.1 only; prints one line per case.
set -euo pipefail

bin=$(realpath "$1")
shift
cases=("$@")
[ ${#cases[@]} -eq 0 ] && cases=(endless md5-1g drip)
work=$(mktemp -d)
trap 'kill "$srv" 2>/dev/null || true; rm -rf "$work"' EXIT

cat >"$work/server.py" <<'EOF'
import http.server, sys, time, socketserver
mode = sys.argv[1]
ZERO = b"\0" * 65536

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    def log_message(self, *a):
        pass
    def send(self, body, length=True):
        self.send_response(200)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        p = self.path
        try:
            if p.endswith("version.txt"):
                return self.send(b"9999\n")
            if p.endswith(".md5"):
                if mode == "md5-1g":
                    n = 1 << 30
                    self.send_response(200)
                    self.send_header("Content-Length", str(n))
                    self.end_headers()
                    for _ in range(n // len(ZERO)):
                        self.wfile.write(ZERO)
                    return
                return self.send(b"0123456789abcdef0123456789abcdef\n")
            if mode == "endless":
                self.send_response(200)
                self.end_headers()
                while True:
                    self.wfile.write(ZERO)
            if mode == "drip":
                self.send_response(200)
                self.send_header("Content-Length", str(1 << 20))
                self.end_headers()
                while True:
                    self.wfile.write(b"\0")
                    self.wfile.flush()
                    time.sleep(5)
            return self.send(ZERO * 16)
        except (BrokenPipeError, ConnectionResetError):
            pass

class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True

s = S(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF

"$bin" keygen --out "$work/keys" --unencrypted >/dev/null 2>&1

for c in "${cases[@]}"; do
  python3 "$work/server.py" "$c" >"$work/port" &
  srv=$!
  for _ in $(seq 50); do [ -s "$work/port" ] && break; sleep 0.1; done
  port=$(cat "$work/port")
  total=20m
  [ "$c" = drip ] && total=1m
  rm -rf "$work/state" "$work/spool"
  cat >"$work/fetch.yaml" <<EOF
spool: spool
state: state
signing_key: keys/bundle.key
http:
  total_timeout: $total
sources:
  - ruleset: et-open
    engine: suricata-5.0
    base_url: http://127.0.0.1:$port/
EOF
  chmod 600 "$work/fetch.yaml"
  /usr/bin/time -f "%e %M" -o "$work/time" "$bin" fetch -c "$work/fetch.yaml" --now \
    >"$work/out" 2>&1 || true
  read -r wall rss < <(tail -n 1 "$work/time")
  printf '%-8s wall %6.1f s  peak RSS %7.1f MiB  exit/summary: %s\n' "$c" "$wall" \
    "$(awk -v k="$rss" 'BEGIN{print k/1024}')" "$(grep -m1 -E 'FAILED|new bundle|heartbeat' "$work/out" | cut -c1-160)"
  kill "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  rm -f "$work/port"
done
