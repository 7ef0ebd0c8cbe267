# Sourced by `make test`: puts helm (3.x), kubernetes-validate and docker-compose on PATH for tests/deploy.
# Users bring their own helm; CI and fresh machines get pinned copies from ../shared/tools/helm-tools.sh.
if ! command -v helm >/dev/null 2>&1 || ! command -v kubernetes-validate >/dev/null 2>&1; then
  if [ -f ../shared/tools/helm-tools.sh ]; then
    # shellcheck source=/dev/null
    source ../shared/tools/helm-tools.sh
  else
    echo "deploy/tools.sh: install Helm 3 and 'pip install kubernetes-validate' to run the chart checks" >&2
  fi
fi
command -v docker-compose >/dev/null 2>&1 || echo "deploy/tools.sh: 'apt-get install docker-compose' (make system-deps)" >&2
