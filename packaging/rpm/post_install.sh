# etferry .rpm %post: create the service user and state/log directories.
sh /usr/share/etferry/setup-host.sh
