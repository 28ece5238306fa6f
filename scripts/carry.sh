#!/usr/bin/env bash
# Copy new bundles from the DMZ outbox to a mount point (USB disk, diode staging folder, share),
# then verify the copies there with `etferry verify`, so a bad medium is caught before it travels.
#
# usage: scripts/carry.sh OUTBOX MOUNTPOINT PUBKEY
#   OUTBOX      the fetch spool (e.g. /var/lib/etferry/outbox)
#   MOUNTPOINT  where the medium is mounted (bundles are copied into MOUNTPOINT/etferry/)
#   PUBKEY      the bundle public key (bundle.pub)
# Exit: 0 all copies verified, 1 usage or copy error, 4 a copy failed verification (it is removed).
set -euo pipefail

if [ $# -ne 3 ]; then
    sed -n '2,10p' "$0" >&2
    exit 1
fi
outbox=$1 mount=$2 pubkey=$3
etferry=${ETFERRY:-etferry}
dest="$mount/etferry"
mkdir -p "$dest"

status=0
copied=0
for bundle in "$outbox"/*/; do
    bundle=${bundle%/}
    name=$(basename "$bundle")
    # Only finished bundles: they have a signed manifest. Temp dirs start with a dot and are skipped.
    [ -f "$bundle/manifest.json.minisig" ] || continue
    [ -e "$dest/$name" ] && continue
    # Copy under a dot-name, then rename: the watcher never sees a half-copied bundle name.
    tmp="$dest/.carry-$name"
    rm -rf "$tmp"
    cp -r "$bundle" "$tmp"
    sync
    mv "$tmp" "$dest/$name"
    if "$etferry" verify --key "$pubkey" "$dest/$name"; then
        copied=$((copied + 1))
    else
        echo "carry: $name failed verification on the medium; removed the copy" >&2
        rm -rf "${dest:?}/$name"
        status=4
    fi
done
sync
echo "carry: $copied bundle(s) copied to $dest and verified"
exit $status
