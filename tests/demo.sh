#!/usr/bin/env bash
# The README's first command (`make demo`): a local control plane, the SeiNode CRD, the test
# sidecar, the controller, and a sample SeiNode driven to Running through its plan.
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLE=${SAMPLE:-deploy/samples/full-node.yaml}
target_dir=${CARGO_TARGET_DIR:-target}
bin=$(bash tests/control-plane/build.sh)
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  exec 9>&- 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== building sei-operator, the test sidecar and the control-plane runner"
cargo build --locked -q -p sei-operator -p sei-test-sidecar
cargo build --locked -q -p sei-testkit --example control_plane

echo "== starting etcd, kube-apiserver and kube-controller-manager"
mkfifo "$work/hold"
"$target_dir/debug/examples/control_plane" "$work/kubeconfig" < "$work/hold" > "$work/control-plane.log" 2>&1 &
pids+=($!)
exec 9>"$work/hold"
for _ in $(seq 600); do grep -q '^ready' "$work/control-plane.log" 2>/dev/null && break; sleep 0.1; done
grep '^ready' "$work/control-plane.log" || { cat "$work/control-plane.log"; exit 1; }
export KUBECONFIG="$work/kubeconfig"
kubectl() { "$bin/kubectl" "$@"; }

echo "== installing the SeiNode CRD"
kubectl apply -f deploy/crds/crds.yaml
kubectl wait --for=condition=Established crd/seinodes.sei.io --timeout=60s

echo "== starting the test sidecar and the controller"
"$target_dir/debug/sei-test-sidecar" --script snapshot-restore=complete:2 > "$work/sidecar.url" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/sidecar.url" ] && break; sleep 0.1; done
SEI_SNAPSHOT_BUCKET=demo-snapshots SEI_GENESIS_BUCKET=demo-genesis \
  "$target_dir/debug/sei-operator" run --sidecar-url-template "$(cat "$work/sidecar.url")" --metrics-addr 127.0.0.1:18080 > "$work/controller.log" 2>&1 &
pids+=($!)

echo "== applying $SAMPLE"
kubectl apply -f "$SAMPLE"
name=$(awk '/^  name:/ {print $2; exit}' "$SAMPLE")
if ! kubectl wait --for=jsonpath='{.status.phase}'=Running "snode/$name" --timeout=120s; then
  echo "the node did not reach Running; controller log:"; tail -15 "$work/controller.log"; exit 1
fi
kubectl get snode
echo "== the plan it ran (task, status, module digest)"
kubectl get snode "$name" -o jsonpath='{range .status.plan.tasks[*]}{.type}{"\t"}{.status}{"\t"}{.moduleDigest}{"\n"}{end}' \
  | awk -F'\t' '{printf "  %-24s %-9s %s\n", $1, $2, substr($3, 1, 12)}'
echo "== objects it owns"
kubectl get statefulset,service,pvc
echo "== events"
kubectl get events --field-selector "involvedObject.name=$name" -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp 2>/dev/null || true
echo "== controller metrics (http://127.0.0.1:18080/metrics)"
curl -fsS http://127.0.0.1:18080/readyz >/dev/null
curl -fsS http://127.0.0.1:18080/metrics | grep -E '^sei_(plans_active|node_phase\{.*phase="Running"|task_step_duration_seconds_count)' | head -6
echo "demo: SeiNode $name is Running"
