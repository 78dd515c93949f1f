#!/usr/bin/env bash
# `make e2e`: the e2e suite (tests/e2e) on a kind cluster, from the repository root.
#
#   1. creates the kind cluster $E2E_CLUSTER (audio-extract-e2e) unless it exists;
#   2. builds both images with $IMAGE_BUILD (default `docker build`), tagged `e2e`,
#      and loads them into the cluster with `kind load docker-image`;
#   3. applies crds/ server-side and deploy/ through tests/e2e/deploy (the `e2e` tags,
#      pull policy Never), and waits for the operator Deployment;
#   4. runs `pytest -m e2e tests/e2e` with AUDIOEXTRACT_E2E=1 against that cluster;
#   5. deletes the cluster, unless KEEP_CLUSTER=1.
#
# The cluster's kubeconfig goes to .cache/e2e/kubeconfig; the user's own kubeconfig and
# current context are neither used nor changed.
#
# Environment: IMAGE_BUILD, KEEP_CLUSTER, E2E_CLUSTER, PYTEST (default .venv/bin/pytest),
# PYTEST_ARGS (extra pytest arguments), KUBECTL (default kubectl), KIND (default kind).
set -euo pipefail

cd "$(dirname "$0")/../.."

CLUSTER=${E2E_CLUSTER:-audio-extract-e2e}
IMAGE_BUILD=${IMAGE_BUILD:-docker build}
PYTEST=${PYTEST:-.venv/bin/pytest}
KUBECTL=${KUBECTL:-kubectl}
KIND=${KIND:-kind}
OPERATOR_IMAGE=audio-extract-operator:e2e # the tags tests/e2e/deploy sets
WORKER_IMAGE=audio-extract-worker:e2e
SYSTEM_NS=audio-extract-system
KUBECONFIG_FILE=$PWD/.cache/e2e/kubeconfig

die() {
  echo "e2e: $*" >&2
  exit 1
}

command -v "$KIND" >/dev/null || die "'$KIND' not found: install kind (https://kind.sigs.k8s.io/) or set KIND=/path/to/kind"
command -v docker >/dev/null || die "'docker' not found: kind needs a Docker engine (https://docs.docker.com/engine/install/)"
docker info >/dev/null 2>&1 || die "the Docker engine is not reachable ('docker info' fails): start it, or check DOCKER_HOST and your access to its socket"
command -v "$KUBECTL" >/dev/null || die "'$KUBECTL' not found: install kubectl or set KUBECTL=/path/to/kubectl"
[[ -x $PYTEST ]] || die "$PYTEST not found: run 'make venv' first, or set PYTEST"

log() { echo "==> $*" >&2; }
k() { "$KUBECTL" --kubeconfig "$KUBECONFIG_FILE" "$@"; }

on_exit() {
  local rc=$?
  if ((rc != 0)) && [[ -s $KUBECONFIG_FILE ]]; then
    log "failed (exit $rc); the operator's log:"
    k -n "$SYSTEM_NS" logs deploy/audio-extract-operator --tail=100 2>&1 || true
  fi
  if [[ ${KEEP_CLUSTER:-} == 1 ]]; then
    log "KEEP_CLUSTER=1: keeping kind cluster '$CLUSTER' (kubeconfig: $KUBECONFIG_FILE; delete it with '$KIND delete cluster --name $CLUSTER')"
  else
    log "deleting kind cluster '$CLUSTER' (KEEP_CLUSTER=1 keeps it)"
    "$KIND" delete cluster --name "$CLUSTER" || true
  fi
  exit "$rc"
}

mkdir -p "$(dirname "$KUBECONFIG_FILE")"
reused=
trap on_exit EXIT
if "$KIND" get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "reusing kind cluster '$CLUSTER'"
  reused=1
else
  log "creating kind cluster '$CLUSTER'"
  "$KIND" create cluster --name "$CLUSTER" --kubeconfig "$KUBECONFIG_FILE" --wait 180s
fi
"$KIND" get kubeconfig --name "$CLUSTER" >"$KUBECONFIG_FILE"
chmod 600 "$KUBECONFIG_FILE"

# IMAGE_BUILD is a command line ("docker build", "docker buildx build --load"): split it.
read -ra build <<<"$IMAGE_BUILD"
log "building $OPERATOR_IMAGE and $WORKER_IMAGE with '$IMAGE_BUILD'"
"${build[@]}" -t "$OPERATOR_IMAGE" -f images/operator/Dockerfile .
"${build[@]}" -t "$WORKER_IMAGE" -f images/worker/Dockerfile .
"$KIND" load docker-image --name "$CLUSTER" "$OPERATOR_IMAGE" "$WORKER_IMAGE"

log "installing the CRDs and the operator"
k apply --server-side --field-manager=e2e -f crds/
k wait --for=condition=Established --timeout=60s -f crds/
k apply -k tests/e2e/deploy
if [[ -n $reused ]]; then
  # Same tag, possibly a new image: start the operator again from what was just loaded.
  k -n "$SYSTEM_NS" rollout restart deploy/audio-extract-operator
fi
k -n "$SYSTEM_NS" rollout status deploy/audio-extract-operator --timeout=180s

log "running the e2e tests"
# PYTEST_ARGS is split on purpose (several arguments).
# shellcheck disable=SC2086
AUDIOEXTRACT_E2E=1 E2E_KUBECONFIG=$KUBECONFIG_FILE E2E_KUBECTL=$KUBECTL E2E_WORKER_IMAGE=$WORKER_IMAGE \
  "$PYTEST" -m e2e tests/e2e ${PYTEST_ARGS:-}
