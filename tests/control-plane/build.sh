#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager and kubectl from the Go modules pinned in go.mod
# into a cache directory keyed by the Kubernetes version, and Helm from helm/go.mod into one keyed by
# its version (linked into the same bin directory as `helm`), and copies the third-party CRDs pinned
# in crds/go.mod (Gateway API HTTPRoute, Prometheus Operator ServiceMonitor) from the Go module cache
# into a directory keyed by their versions (linked as `crds` in the bin directory). A no-op when all
# are already there.
#
#   tests/control-plane/build.sh            # prints the bin directory on its last line
#   SEI_K8S_BIN_DIR=/path tests/control-plane/build.sh
#
# A cold build takes many minutes on 2 cores; it says which binary it is building and prints a
# heartbeat every 30 s so it is never a silent wait.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '($1=="k8s.io/kubernetes" && $2 ~ /^v/) {print $2} ($1=="require" && $2=="k8s.io/kubernetes") {print $3}' "$here/go.mod")
[ -n "$version" ] || { echo "build.sh: cannot read the k8s.io/kubernetes version from $here/go.mod" >&2; exit 1; }
etcd_version=$(awk '$1=="go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2}' "$here/go.mod")
# Bump when the way the binaries are built changes (flags below), so caches are rebuilt.
recipe=r2
bin=${SEI_K8S_BIN_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sei-operator/k8s-$version-etcd-$etcd_version-$recipe/bin}
mkdir -p "$bin"

targets=(
  "etcd go.etcd.io/etcd/server/v3"
  "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
  "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager"
  "kubectl k8s.io/kubernetes/cmd/kubectl"
)
missing=()
for t in "${targets[@]}"; do
  name=${t%% *}
  [ -x "$bin/$name" ] || missing+=("$t")
done

# Helm, from its own Go module (its Kubernetes libraries are not the control plane's).
helm_version=$(awk '($1=="helm.sh/helm/v4" && $2 ~ /^v/) {print $2} ($1=="require" && $2=="helm.sh/helm/v4") {print $3}' "$here/helm/go.mod")
[ -n "$helm_version" ] || { echo "build.sh: cannot read the helm.sh/helm/v4 version from $here/helm/go.mod" >&2; exit 1; }
helm_bin=${XDG_CACHE_HOME:-$HOME/.cache}/sei-operator/helm-$helm_version/bin
build_helm() {
  mkdir -p "$helm_bin"
  echo "building helm $helm_version (helm.sh/helm/v4/cmd/helm) ..." >&2
  local t0; t0=$(date +%s)
  ( cd "$here/helm" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath \
      -ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$helm_version" \
      -o "$helm_bin/helm.partial" helm.sh/helm/v4/cmd/helm ) || { echo "build.sh: go build of helm failed" >&2; exit 1; }
  mv "$helm_bin/helm.partial" "$helm_bin/helm"
  echo "built helm in $(( $(date +%s) - t0 ))s" >&2
}
link_helm() {
  [ -x "$helm_bin/helm" ] || build_helm
  [ "$(readlink "$bin/helm" 2>/dev/null)" = "$helm_bin/helm" ] || ln -sfn "$helm_bin/helm" "$bin/helm"
}

# Third-party CRDs, as their projects publish them in their Go modules (checked against crds/go.sum).
crd_modules=$(awk '$1 ~ /^(sigs\.k8s\.io\/gateway-api|github\.com\/prometheus-operator\/prometheus-operator)$/ && $2 ~ /^v/ {print $1"@"$2}' "$here/crds/go.mod" | sort)
[ "$(echo "$crd_modules" | wc -l)" -eq 2 ] || { echo "build.sh: cannot read the CRD module versions from $here/crds/go.mod" >&2; exit 1; }
crd_dir=${XDG_CACHE_HOME:-$HOME/.cache}/sei-operator/crds-$(echo "$crd_modules" | sed 's#.*/##' | paste -sd_ -)
fetch_crds() {
  echo "fetching third-party CRDs: $(echo "$crd_modules" | tr '\n' ' ')" >&2
  local dirs; dirs=$(cd "$here/crds" && GOFLAGS=-mod=mod go mod download -json $(echo "$crd_modules" | sed 's/@.*//') | awk -F'"' '$2=="Dir" {print $4}') \
    || { echo "build.sh: go mod download of the CRD modules failed" >&2; exit 1; }
  mkdir -p "$crd_dir.partial"
  for d in $dirs; do
    for f in "$d/config/crd/standard/gateway.networking.k8s.io_httproutes.yaml" \
             "$d/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml"; do
      [ -f "$f" ] && cp "$f" "$crd_dir.partial/"
    done
  done
  [ "$(ls "$crd_dir.partial" | wc -l)" -eq 2 ] || { echo "build.sh: expected 2 CRD files in $crd_dir.partial, found: $(ls "$crd_dir.partial")" >&2; exit 1; }
  chmod -R u+w "$crd_dir.partial" && rm -rf "$crd_dir" && mv "$crd_dir.partial" "$crd_dir"
}
link_crds() {
  [ -d "$crd_dir" ] || fetch_crds
  [ "$(readlink "$bin/crds" 2>/dev/null)" = "$crd_dir" ] || ln -sfn "$crd_dir" "$bin/crds"
}

if [ ${#missing[@]} -eq 0 ]; then
  link_helm
  link_crds
  echo "control plane $version (etcd $etcd_version), helm $helm_version: cached" >&2
  echo "$bin"
  exit 0
fi

export CGO_ENABLED=0 GOFLAGS=-mod=mod
start=$(date +%s)
i=0
for t in "${missing[@]}"; do
  i=$((i + 1))
  name=${t%% *}; pkg=${t#* }
  echo "[$i/${#missing[@]}] building $name ($pkg) ..." >&2
  t0=$(date +%s)
  minor=$(echo "$version" | cut -d. -f2)
  ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  ( cd "$here" && go build -trimpath -ldflags="$ldflags" -o "$bin/$name.partial" "$pkg" ) &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && echo "    ... still building $name ($(( $(date +%s) - t0 ))s, $(du -sh "${GOCACHE:-$(go env GOCACHE)}" 2>/dev/null | cut -f1) in the Go build cache)" >&2
  done
  wait "$pid" || { echo "build.sh: go build of $pkg failed" >&2; exit 1; }
  mv "$bin/$name.partial" "$bin/$name"
  echo "[$i/${#missing[@]}] built $name in $(( $(date +%s) - t0 ))s" >&2
done
echo "control plane $version built in $(( $(date +%s) - start ))s; $(du -sh "$bin" | cut -f1) in $bin" >&2
link_helm
link_crds
echo "$bin"
