#!/bin/sh
# Shared by the .deb postinst and the .rpm %post: the service user and the state and log
# directories of the production layout (/etc/etferry, /var/lib/etferry, /var/log/etferry).
# Idempotent: an upgrade keeps the user, the directories, their contents and their owners.
set -e
if ! getent group etferry >/dev/null 2>&1; then
    groupadd --system etferry
fi
if ! getent passwd etferry >/dev/null 2>&1; then
    useradd --system --gid etferry --home-dir /var/lib/etferry --no-create-home \
        --shell /usr/sbin/nologin --comment "etferry (Emerging Threats rulesets to ThreatQ)" etferry
fi
for d in /var/lib/etferry /var/log/etferry; do
    if [ ! -d "$d" ]; then
        install -d -m 0750 -o etferry -g etferry "$d"
    fi
done
# Configs hold secrets' paths and ThreatQ logins: readable by the service, not by everyone.
if [ -d /etc/etferry ]; then
    chgrp etferry /etc/etferry && chmod 0750 /etc/etferry
    for f in /etc/etferry/*.yaml; do
        [ -f "$f" ] && chgrp etferry "$f" && chmod 0640 "$f"
    done
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || true
fi
exit 0
