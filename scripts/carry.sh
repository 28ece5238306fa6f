#!/usr/bin/env bash
# carry.sh: copy the bundles fetch published since the last trip from the DMZ outbox to a medium
# (USB disk, diode staging folder, share), then verify each copy there with `etferry verify`, so
# a bad medium is caught before it travels.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: carry.sh [--latest] [--all] [--outbox DIR] [--key FILE] [--state FILE] MOUNTPOINT
       carry.sh [--latest] [--all] [--state FILE] OUTBOX MOUNTPOINT PUBKEY

Copies bundles from the outbox into MOUNTPOINT/etferry/ and verifies every copy. On the
air-gapped host: etferry ingest MOUNTPOINT/etferry   (or copy its entries into /var/lib/etferry/inbox).

  MOUNTPOINT    where the medium is mounted, e.g. /media/usb
  --outbox DIR  the fetch spool (default /var/lib/etferry/outbox, fetch.yaml `spool:`)
  --key FILE    the bundle public key (default /etc/etferry/bundle.pub)
  --latest      per source only the newest bundle (plus the newest heartbeat when it is newer):
                each bundle is a full snapshot of its source, so the older ones add nothing
  --all         ignore the record of earlier trips and carry every bundle in OUTBOX
  --state FILE  the record of what was carried (default OUTBOX.carried, beside the outbox)

Only bundles newer than the last trip are carried: the state file keeps, per source, the last
sequence copied and verified. Copies are made under a hidden name and renamed when complete.
Exit: 0 all copies verified (also when nothing was new), 1 copy error, 2 usage,
      4 a copy failed verification (it is removed and not recorded as carried).
Environment: ETFERRY=path/to/etferry (default: etferry on PATH).
EOF
}

latest=0
all=0
state=
outbox=/var/lib/etferry/outbox
pubkey=/etc/etferry/bundle.pub
args=()
while [ $# -gt 0 ]; do
    case $1 in
        --latest) latest=1 ;;
        --all) all=1 ;;
        --state | --outbox | --key)
            [ $# -ge 2 ] || { usage >&2; exit 2; }
            case $1 in
                --state) state=$2 ;;
                --outbox) outbox=$2 ;;
                --key) pubkey=$2 ;;
            esac
            shift
            ;;
        -h | --help) usage; exit 0 ;;
        -*) echo "carry: unknown option $1" >&2; usage >&2; exit 2 ;;
        *) args+=("$1") ;;
    esac
    shift
done
case ${#args[@]} in
    1) mount=${args[0]} ;;
    3) outbox=${args[0]} mount=${args[1]} pubkey=${args[2]} ;;
    *) usage >&2; exit 2 ;;
esac
outbox=${outbox%/}
state=${state:-$outbox.carried}
etferry=${ETFERRY:-etferry}
[ -d "$outbox" ] || { echo "carry: outbox $outbox is not a directory" >&2; exit 2; }
[ -f "$pubkey" ] || { echo "carry: public key $pubkey not found" >&2; exit 2; }
[ -d "$mount" ] || { echo "carry: $mount is not a directory (is the medium mounted?)" >&2; exit 2; }
dest="$mount/etferry"
mkdir -p "$dest"

# The last sequence carried per source: lines "SOURCE SEQUENCE".
declare -A last=()
if [ "$all" = 0 ] && [ -f "$state" ]; then
    while read -r src seq; do
        [ -n "$src" ] && last[$src]=$((10#$seq))
    done <"$state"
fi

# Finished bundles (signed manifest; temp dirs start with a dot), by source then sequence.
declare -A newest=() newest_beat=()
candidates=()
for bundle in "$outbox"/*/; do
    bundle=${bundle%/}
    name=$(basename "$bundle")
    [ -f "$bundle/manifest.json.minisig" ] || continue
    [[ $name =~ ^(.+)-([0-9]{8})$ ]] || continue
    src=${BASH_REMATCH[1]} seq=$((10#${BASH_REMATCH[2]}))
    [ "$seq" -gt "${last[$src]:-0}" ] || continue
    candidates+=("$name")
    if grep -q '"unchanged_since"' "$bundle/manifest.json"; then
        newest_beat[$src]=$seq
    else
        newest[$src]=$seq
    fi
done

status=0
copied=0
skipped=0
declare -A carried=() failed=()
for name in "${candidates[@]}"; do
    [[ $name =~ ^(.+)-([0-9]{8})$ ]]
    src=${BASH_REMATCH[1]} seq=$((10#${BASH_REMATCH[2]}))
    if [ "$latest" = 1 ]; then
        # The newest snapshot, and the newest heartbeat only when it comes after it.
        keep=0
        [ "$seq" = "${newest[$src]:-}" ] && keep=1
        [ "$seq" = "${newest_beat[$src]:-}" ] && [ "$seq" -gt "${newest[$src]:-0}" ] && keep=1
        if [ "$keep" = 0 ]; then
            skipped=$((skipped + 1))
            carried[$src]=$(( seq > ${carried[$src]:-0} ? seq : ${carried[$src]:-0} ))
            continue
        fi
    fi
    if [ -e "$dest/$name" ]; then
        echo "carry: $name is already on the medium"
    else
        # Copy under a dot-name, then rename: the watcher never sees a half-copied bundle.
        tmp="$dest/.carry-$name"
        rm -rf "$tmp"
        cp -r "$outbox/$name" "$tmp" || { echo "carry: cannot copy $name to $dest" >&2; exit 1; }
        sync
        mv "$tmp" "$dest/$name"
    fi
    if "$etferry" verify --key "$pubkey" "$dest/$name"; then
        copied=$((copied + 1))
        carried[$src]=$(( seq > ${carried[$src]:-0} ? seq : ${carried[$src]:-0} ))
    else
        echo "carry: $name failed verification on the medium; removed the copy" >&2
        rm -rf "${dest:?}/$name"
        failed[$src]=1
        status=4
    fi
done
sync

# Record the trip: a source whose copy failed keeps its old mark, so the next trip retries it.
if [ "${#carried[@]}" -gt 0 ]; then
    for src in "${!carried[@]}"; do
        [ -n "${failed[$src]:-}" ] || last[$src]=${carried[$src]}
    done
    tmpstate="$state.tmp.$$"
    for src in "${!last[@]}"; do
        printf '%s %08d\n' "$src" "${last[$src]}"
    done | sort >"$tmpstate"
    mv "$tmpstate" "$state"
fi
msg="carry: $copied new bundle(s) copied to $dest and verified"
[ "$skipped" -gt 0 ] && msg="$msg; $skipped older snapshot(s) skipped (--latest)"
[ "${#candidates[@]}" -eq 0 ] && msg="carry: nothing new since the last trip ($state)"
echo "$msg"
exit $status
