#!/usr/bin/env bash
# Release artifacts from a clean checkout, into dist/:
#   etferry-<version>-x86_64-linux.tar.gz  binary for glibc 2.17+ (cargo-zigbuild) + docs, licences,
#                                          example configs, systemd units, man page, completions
#   etferry_<version>-1_amd64.deb          cargo-deb
#   etferry-<version>-1.x86_64.rpm         cargo-generate-rpm
#   SHA256SUMS (+ SHA256SUMS.minisig with RELEASE_KEY: `etferry verify --key bundle.pub SHA256SUMS`
#   or `minisign -V -p bundle.pub -m SHA256SUMS` checks it)
#
# Usage: scripts/release.sh
#   env: RELEASE_KEY=path/to/bundle.key  sign SHA256SUMS with etferry's key format
#        RELEASE_KEY_PASSWORD_FILE=FILE  the key's password (an encrypted key)
#        RELEASE_VENV=DIR                venv holding ziglang + cargo-zigbuild (default /opt/etferry-release)
#        ALLOW_DIRTY=1                   build from a work tree with uncommitted changes
# Needs: python3 (venv), cargo; installs ziglang and cargo-zigbuild from PyPI, cargo-deb and
# cargo-generate-rpm from crates.io when missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TRIPLE=x86_64-unknown-linux-gnu
GLIBC=2.17
VENV=${RELEASE_VENV:-/opt/etferry-release}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
DIST=$ROOT/dist

if [ -z "${ALLOW_DIRTY:-}" ] && [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    echo "release: the work tree has uncommitted changes (ALLOW_DIRTY=1 to build anyway)" >&2
    exit 2
fi
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$VERSION" ] || { echo "release: no version in Cargo.toml" >&2; exit 2; }

echo "== tools"
if [ ! -x "$VENV/bin/cargo-zigbuild" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet ziglang cargo-zigbuild
fi
export PATH="$VENV/bin:$HOME/.cargo/bin:$PATH"
command -v cargo-deb >/dev/null || cargo install --locked --quiet cargo-deb
command -v cargo-generate-rpm >/dev/null || cargo install --locked --quiet cargo-generate-rpm
rustup target list --installed 2>/dev/null | grep -qx "$TRIPLE" || rustup target add "$TRIPLE" >/dev/null 2>&1 || true

echo "== build ($TRIPLE, glibc $GLIBC)"
cargo zigbuild --release --locked --target "$TRIPLE.$GLIBC"
BIN=$TARGET_DIR/$TRIPLE/release/etferry
[ -x "$BIN" ] || { echo "release: $BIN was not built" >&2; exit 1; }

# No symbol may need a glibc newer than the floor.
MAX=$(objdump -T "$BIN" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
echo "newest glibc symbol version: GLIBC_$MAX"
if [ "$(printf '%s\n%s\n' "$MAX" "$GLIBC" | sort -V | tail -1)" != "$GLIBC" ]; then
    echo "release: $BIN needs GLIBC_$MAX, more than $GLIBC" >&2
    exit 1
fi

echo "== man page, completions"
rm -rf "$DIST"
mkdir -p "$DIST/.build"
"$BIN" man | gzip -9n > "$DIST/.build/etferry.1.gz"
"$BIN" completions bash > "$DIST/.build/etferry.bash"
"$BIN" completions zsh > "$DIST/.build/_etferry"
"$BIN" completions fish > "$DIST/.build/etferry.fish"

echo "== tarball"
NAME=etferry-$VERSION-x86_64-linux
STAGE=$DIST/.build/$NAME
mkdir -p "$STAGE"/{config,systemd,completions,docs,man}
install -m 755 "$BIN" "$STAGE/etferry"
cp README.md ARCHITECTURE.md LICENSE-MIT LICENSE-APACHE "$STAGE/"
cp docs/*.md "$STAGE/docs/"
cp config/*.yaml "$STAGE/config/"
cp scripts/etferry-*.service scripts/etferry-*.timer "$STAGE/systemd/"
cp scripts/carry.sh scripts/crontab.example packaging/setup-host.sh "$STAGE/"
cp "$DIST/.build/etferry.1.gz" "$STAGE/man/"
cp "$DIST/.build/etferry.bash" "$DIST/.build/_etferry" "$DIST/.build/etferry.fish" "$STAGE/completions/"
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$DIST/.build" -cf - "$NAME" | gzip -9n > "$DIST/$NAME.tar.gz"

echo "== .deb, .rpm"
cargo deb --no-build --no-strip --target "$TRIPLE" --output "$DIST/"
cargo generate-rpm --target "$TRIPLE" --output "$DIST/"

echo "== checksums"
(cd "$DIST" && sha256sum -- *.tar.gz *.deb *.rpm > SHA256SUMS)
if [ -n "${RELEASE_KEY:-}" ]; then
    "$BIN" sign --key "$RELEASE_KEY" ${RELEASE_KEY_PASSWORD_FILE:+--password-file "$RELEASE_KEY_PASSWORD_FILE"} "$DIST/SHA256SUMS"
    chmod 644 "$DIST/SHA256SUMS.minisig"
fi
rm -rf "$DIST/.build"
echo "== dist/"
ls -l "$DIST"
