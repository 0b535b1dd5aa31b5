# egressd as a FROM scratch image: the static binary and the two tools it
# drives, nft and ip, with their shared libraries, nothing else. No base
# image, no registry: scripts/image-rootfs.sh DIR assembles the build
# context from this host, then
#
#   docker build -t egressd DIR
#   docker run -d --name egressd --network host --cap-add NET_ADMIN --cap-add NET_RAW \
#     -v /etc/egressd:/etc/egressd:ro -v /run/egressd:/run/egressd \
#     -v /var/lib/egressd:/var/lib/egressd egressd
#
# --network host: egressd installs its rules in the host's network
# namespace. /run/egressd from the host: the admin socket, and the lock
# that keeps a second egressd out of the same namespace (see docs/deploy.md).
FROM scratch
COPY rootfs/ /
ENTRYPOINT ["/usr/bin/egressd"]
CMD ["run", "-config", "/etc/egressd/egressd.toml"]
