#!/usr/bin/env bash
# Workaround for a lab race (reported to the lab's owner): lab/kube's stage-sync applies a Stage
# as soon as its API group is listed, but kwok starts a stage controller only if the group is
# already in the OpenAPI v3 document, and does not retry. Once ceph.rook.io/v1 is published
# there, touch the Rook stages once so kwok starts their controllers. Exits when done.
#   kick_stages.sh KUBECONFIG
set -uo pipefail
export KUBECONFIG=$1
for _ in $(seq 1 900); do
  if kubectl get --raw /openapi/v3 2>/dev/null | grep -q '"apis/ceph.rook.io/v1"' \
     && kubectl get stage rook-cephcluster-ready >/dev/null 2>&1; then
    sleep 2
    for s in rook-cephcluster-ready rook-cephblockpool-ready rook-cephfilesystem-ready rook-cephobjectstore-ready; do
      kubectl annotate stage "$s" homecluster.dev/openapi-ready=true --overwrite >/dev/null
    done
    exit 0
  fi
  sleep 1
done
