#!/usr/bin/env bash
# Checks the packages scripts/release.sh put in dist/ (CI runs it as root after the release build):
#   .deb: dpkg -i, etferry --version, the etferry user and /var/lib/etferry, systemd-analyze verify on
#         the installed units, configs marked as conffiles and kept on reinstall, dpkg -r;
#   .rpm: rpm -qlp lists the same files as the .deb (docs aside), configs marked %config(noreplace);
#   SHA256SUMS matches, and its signature verifies when one was made.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIST=${1:-$ROOT/dist}
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -1)
fail() { echo "check-packages: $*" >&2; exit 1; }
# Leave the machine as it was, pass or fail: the package, its configs, the user and the state it made
# (a later test run on this machine must not find an /etc/etferry it did not write).
had_user=$(getent passwd etferry >/dev/null && echo yes || true)
cleanup() {
    dpkg --purge etferry >/dev/null 2>&1 || true
    if [ -z "$had_user" ]; then
        rm -rf /var/lib/etferry /var/log/etferry /etc/etferry
        userdel etferry >/dev/null 2>&1 || true
        groupdel etferry >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

deb=$(ls "$DIST"/etferry_"$VERSION"*_amd64.deb)
rpmf=$(ls "$DIST"/etferry-"$VERSION"*.x86_64.rpm)
tgz=$DIST/etferry-$VERSION-x86_64-linux.tar.gz
[ -f "$tgz" ] || fail "missing $tgz"
(cd "$DIST" && sha256sum -c SHA256SUMS) || fail "SHA256SUMS does not match"

echo "== tarball"
tar tzf "$tgz" | sort > /tmp/etferry-tgz.list
for f in etferry README.md LICENSE-MIT LICENSE-APACHE config/watch.yaml config/fetch.yaml \
         systemd/etferry-watch.service man/etferry.1.gz completions/etferry.bash; do
    grep -qx "etferry-$VERSION-x86_64-linux/$f" /tmp/etferry-tgz.list || fail "tarball lacks $f"
done

echo "== .deb"
dpkg-deb --info "$deb" | sed -n '1,/Description/p'
dpkg-deb -f "$deb" Version
conffiles=$(dpkg-deb --ctrl-tarfile "$deb" | tar xOf - ./conffiles)
echo "$conffiles" | grep -qx /etc/etferry/watch.yaml || fail "watch.yaml is not a conffile"
echo "$conffiles" | grep -qx /etc/etferry/fetch.yaml || fail "fetch.yaml is not a conffile"
dpkg -i "$deb"
/usr/bin/etferry --version
/usr/bin/etferry --version | grep -qx "etferry $VERSION" || fail "wrong version"
getent passwd etferry >/dev/null || fail "no etferry user"
[ "$(stat -c %U /var/lib/etferry)" = etferry ] || fail "/var/lib/etferry is not owned by etferry"
[ -d /var/log/etferry ] || fail "no /var/log/etferry"
man -w etferry >/dev/null 2>&1 || [ -f /usr/share/man/man1/etferry.1.gz ] || fail "no man page"
units=$(ls /usr/lib/systemd/system/etferry-*.service /usr/lib/systemd/system/etferry-*.timer)
echo "$units"
# systemd-analyze verify checks the units as installed (ExecStart binary present, keys valid).
out=$(systemd-analyze verify $units 2>&1) || fail "systemd-analyze verify: $out"
if echo "$out" | grep -i "etferry" | grep -v "^$" ; then fail "systemd-analyze warns about the units"; fi
echo "systemd-analyze verify: clean"
# A changed config survives a reinstall of the same package (conffile, never overwritten).
echo "# site change" >> /etc/etferry/watch.yaml
DEBIAN_FRONTEND=noninteractive dpkg -i --force-confold "$deb" >/dev/null
grep -q "# site change" /etc/etferry/watch.yaml || fail "reinstall overwrote /etc/etferry/watch.yaml"
dpkg -r etferry >/dev/null
[ ! -e /usr/bin/etferry ] || fail "dpkg -r left /usr/bin/etferry"
[ -d /var/lib/etferry ] || fail "dpkg -r removed the site's state"

echo "== .rpm"
rpm -qip "$rpmf" | sed -n '1,/Summary/p'
rpm -qlp "$rpmf" | sort > /tmp/etferry-rpm.list
cat /tmp/etferry-rpm.list
# Same files as the .deb (files only, not directories), apart from where each distribution keeps
# docs, licences and zsh completions.
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' | grep -v '/$' | sort > /tmp/etferry-deb.list
norm() { grep -v -e '^/usr/share/doc/' -e '^/usr/share/licenses/' -e 'zsh' ; }
diff <(norm < /tmp/etferry-deb.list) <(norm < /tmp/etferry-rpm.list) \
    || fail ".deb and .rpm install different files"
for f in /usr/bin/etferry /etc/etferry/watch.yaml /usr/lib/systemd/system/etferry-watch.service \
         /usr/share/man/man1/etferry.1.gz /usr/share/bash-completion/completions/etferry; do
    grep -qx "$f" /tmp/etferry-rpm.list || fail "the rpm lacks $f"
done
rpm -qp --configfiles "$rpmf" | grep -qx /etc/etferry/watch.yaml || fail "watch.yaml is not %config in the rpm"
rpm -qp --qf '[%{FILENAMES} %{FILEFLAGS:fflags}\n]' "$rpmf" | grep '^/etc/etferry/watch.yaml' | grep -q n \
    || fail "watch.yaml is not %config(noreplace)"
rpm -qp --scripts "$rpmf" | grep -q setup-host.sh || fail "rpm %post does not create the user"

if [ -n "${RELEASE_PUB:-}" ]; then
    echo "== SHA256SUMS signature"
    [ -f "$DIST/SHA256SUMS.minisig" ] || fail "RELEASE_PUB given but dist/SHA256SUMS.minisig is missing"
    x=$(mktemp -d)
    tar xzf "$tgz" -C "$x"
    "$x/etferry-$VERSION-x86_64-linux/etferry" verify --key "$RELEASE_PUB" "$DIST/SHA256SUMS" \
        || fail "etferry verify refused SHA256SUMS"
    if command -v minisign >/dev/null; then
        minisign -V -p "$RELEASE_PUB" -m "$DIST/SHA256SUMS" || fail "minisign -V refused SHA256SUMS"
    fi
    rm -rf "$x"
fi
echo "check-packages: all good"
