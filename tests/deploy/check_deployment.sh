#!/usr/bin/env bash
# Validates what can be validated without a Docker engine: every compose file and
# combination parses (docker-compose config, offline), and the images install the one
# package list that scripts/install-deps.sh uses. tests/containers builds and runs them.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
export ENHANCE_ADMIN_PASSWORD=test ENHANCE_POSTGRES_PASSWORD=test ENHANCE_RABBITMQ_PASSWORD=test
failures=0
check() {
  if "$@" >/tmp/enhance-deploy-check.$$ 2>&1; then
    echo "ok: $*"
  else
    echo "FAILED: $*"; cat /tmp/enhance-deploy-check.$$; failures=$((failures + 1))
  fi
  rm -f /tmp/enhance-deploy-check.$$
}
check docker-compose -f docker-compose.yml config -q
check docker-compose -f docker-compose.yml -f docker-compose.postgresql.yml config -q
check docker-compose -f docker-compose.yml -f docker-compose.cuda.yml config -q
check docker-compose -f docker-compose.cluster.yml config -q
check bash -c '! env -u ENHANCE_RABBITMQ_PASSWORD docker-compose -f docker-compose.cluster.yml config -q'
# The cluster's load balancer configuration is valid for Debian's HAProxy.
if command -v haproxy >/dev/null; then
  check haproxy -c -q -f docker/haproxy/haproxy.cfg
fi
# A missing password must be refused, not defaulted.
check bash -c '! env -u ENHANCE_ADMIN_PASSWORD docker-compose -f docker-compose.yml config -q'
for dockerfile in Dockerfile Dockerfile.cuda; do
  check grep -q "COPY scripts/packages.txt" "$dockerfile"
  # No package is named in an apt-get line except the CUDA image's pip tooling: they come
  # from the package list, or from the list the build stage derived from it.
  check bash -c "! grep -E 'apt-get install[^|]*[a-z]' $dockerfile | grep -vE 'python3-pip|--no-install-recommends (< /usr/share/orthanc-enhance/runtime-packages.txt )?\\\\$'"
done
# Orthanc configuration files parse: comments allowed, as Orthanc allows them, and the
# demo's @PLACEHOLDERS@ filled in as scripts/demo.sh fills them.
for json in orthanc-config/*.json; do
  check python3 -c "
import json, re, sys
text = re.sub(r'^\s*//.*$', '', open(sys.argv[1]).read(), flags=re.M)
json.loads(re.sub(r'@[A-Z_]+@', '1', text))" "$json"
done
exit $((failures > 0))
