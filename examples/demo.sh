#!/bin/sh
# Placeholder until the live demo lands: judge a few targets with the example policy.
set -u
cd "$(dirname "$0")/.."
for t in allowed.test:443 api.wild.test wild.test evil.test 198.51.100.77 198.51.100.130; do
	./bin/egressd check -config examples/egressd.toml -sandbox sb1 "$t"
done
exit 0
