#!/bin/sh
# Before the package is removed (not upgraded): stop and disable the daemon.
# The modules stop with it; the data dir (/var/lib/outpost) is kept.
set -e
case "$1" in
remove | purge | 0) ;; # dpkg: remove; rpm: 0 packages left
*) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl disable --now outpost.service >/dev/null 2>&1 || true
fi
