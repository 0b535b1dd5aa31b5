#!/bin/sh
# Installs the tools egressd's tests and demo drive: the kernel rule tools
# and real clients/servers. Debian/Ubuntu only; needs root. Skips apt when
# every tool is already there.
set -eu
need=""
for t in nft:nftables ip:iproute2 curl:curl openssl:openssl dig:dnsutils haproxy:haproxy ping:iputils-ping nc:netcat-openbsd dnsperf:dnsperf bc:bc dockerd:docker.io busybox:busybox-static systemd-analyze:systemd git:git pip3:python3-pip tinyproxy:tinyproxy psql:postgresql runuser:util-linux; do
	cmd=${t%%:*} pkg=${t#*:}
	command -v "$cmd" >/dev/null 2>&1 || need="$need $pkg"
done
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: missing$need; run as root to install them" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# Tests start dockerd in network namespaces of their own: the package must
# not start one on the host (policy-rc.d 101: no service starts).
rcd=/usr/sbin/policy-rc.d
if [ ! -e $rcd ]; then
	printf '#!/bin/sh\nexit 101\n' >$rcd && chmod +x $rcd
	trap 'rm -f $rcd' EXIT
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends$need
