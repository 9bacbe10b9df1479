#!/bin/sh
# After the package is installed or upgraded: systemd learns of the unit. The
# daemon is not enabled: it needs a connection string in /etc/outpost/config.yaml.
set -e
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
