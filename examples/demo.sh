#!/bin/sh
# make demo: the lock-down story, live, in throwaway network namespaces
# (examples/lockdown/README.md). Needs root.
set -eu
cd "$(dirname "$0")/.."
exec ./examples/lockdown/lockdown.sh "$@"
