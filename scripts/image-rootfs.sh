#!/bin/sh
# Assembles the build context of the FROM scratch image (Dockerfile) in
# DIR: a static egressd, nft and ip from this host with the libraries
# ldd names, and the directories egressd writes to.
#   scripts/image-rootfs.sh DIR && docker build -t egressd DIR
set -eu
[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
out=$1
root=$out/rootfs
cd "$(dirname "$0")/.."
rm -rf "$root"
mkdir -p "$root/usr/bin" "$root/etc/egressd" "$root/run/egressd" "$root/var/lib/egressd" "$root/tmp"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)" \
	-o "$root/usr/bin/egressd" ./cmd/egressd
for tool in nft ip; do
	path=$(command -v "$tool")
	mkdir -p "$root$(dirname "$path")"
	cp -L "$path" "$root$path"
	# every library ldd resolves, and the loader (the line without "=>")
	ldd "$path" | awk '/=>/ { print $3; next } /^\t\// { print $1 }' | while read -r lib; do
		[ -n "$lib" ] || continue
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
done
cp Dockerfile "$out/Dockerfile"
echo "$out: build context ready (docker build -t egressd $out)"
