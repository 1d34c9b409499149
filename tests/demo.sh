#!/usr/bin/env bash
# The README's first command (`make demo`): a local control plane, the CRDs, the test sidecar,
# the controller, and a sample SeiNode driven to Running through its plan; then a hot swap: a
# TaskModule re-routes the sidecar tasks to a new release of their module in the running
# controller, and a second node's plan runs on it; then a SeiNodeDeployment forms a 4-validator
# network through its genesis ceremony (GROUP_SAMPLE).
set -euo pipefail
cd "$(dirname "$0")/.."
SAMPLE=${SAMPLE:-deploy/samples/full-node.yaml}
GROUP_SAMPLE=${GROUP_SAMPLE:-deploy/samples/genesis-group.yaml}
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

echo "== installing the SeiNode, SeiNodeDeployment and TaskModule CRDs"
kubectl apply -f deploy/crds/crds.yaml
kubectl wait --for=condition=Established crd/seinodes.sei.io crd/seinodedeployments.sei.io crd/taskmodules.sei.io --timeout=60s

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
plan_of() {
  kubectl get snode "$1" -o jsonpath='{range .status.plan.tasks[*]}{.type}{"\t"}{.status}{"\t"}{.moduleDigest}{"\n"}{end}' \
    | awk -F'\t' '{printf "  %-24s %-9s %s\n", $1, $2, substr($3, 1, 12)}'
}
echo "== the plan it ran (task, status, module digest)"
plan_of "$name"
echo "== objects it owns"
kubectl get statefulset,service,pvc
echo "== events"
kubectl get events --field-selector "involvedObject.name=$name" -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message --sort-by=.metadata.creationTimestamp 2>/dev/null || true
echo "== controller metrics (http://127.0.0.1:18080/metrics)"
curl -fsS http://127.0.0.1:18080/readyz >/dev/null
curl -fsS http://127.0.0.1:18080/metrics | grep -E '^sei_(plans_active|node_phase\{.*phase="Running"|task_step_duration_seconds_count)' | head -6

echo "== hot swap: a TaskModule serves the sidecar tasks from a new release of their module"
sha=$("$target_dir/debug/sei-operator" task export sei-builtin-sidecar --tag demo-2 -o "$work/sidecar-2.wasm")
kubectl create configmap sidecar-2 --from-file=module.wasm="$work/sidecar-2.wasm"
cat > "$work/task-module.yaml" <<YAML
apiVersion: sei.io/v1alpha1
kind: TaskModule
metadata:
  name: sidecar-2
spec:
  taskTypes: [snapshot-restore, configure-genesis, config-apply, configure-state-sync, config-validate, mark-ready]
  source: {configMap: {namespace: default, name: sidecar-2, key: module.wasm}}
  sha256: $sha
  capabilities: [sidecar]
YAML
kubectl apply -f "$work/task-module.yaml"
ready=""
for _ in $(seq 300); do
  ready=$(kubectl get tmod sidecar-2 -o jsonpath='{.status.replicas[0].conditions[?(@.type=="Ready")].status}')
  [ "$ready" = True ] && break
  sleep 0.2
done
kubectl get tmod sidecar-2
if [ "$ready" != True ]; then
  kubectl get tmod sidecar-2 -o yaml; echo "the TaskModule did not become Ready"; exit 1
fi
echo "== a second node, planned and run after the swap"
sed "s/^  name: $name\$/  name: $name-2/" "$SAMPLE" | kubectl apply -f -
if ! kubectl wait --for=jsonpath='{.status.phase}'=Running "snode/$name-2" --timeout=120s; then
  echo "the second node did not reach Running; controller log:"; tail -15 "$work/controller.log"; exit 1
fi
plan_of "$name-2"
got=$(kubectl get snode "$name-2" -o jsonpath='{.status.plan.tasks[?(@.type=="mark-ready")].moduleDigest}')
[ "$got" = "$sha" ] || { echo "mark-ready ran ${got:-nothing}, expected the TaskModule's $sha"; exit 1; }
curl -fsS http://127.0.0.1:18080/metrics | grep -E '^sei_active_module\{task_type="mark-ready"'
echo "demo: SeiNode $name is Running; $name-2 ran its sidecar tasks on TaskModule sidecar-2 (${sha:0:12})"

echo "== a 4-validator network: $GROUP_SAMPLE"
group_ns=$(awk '/^  namespace:/ {print $2; exit}' "$GROUP_SAMPLE")
group=$(awk '/^  name:/ {print $2; exit}' "$GROUP_SAMPLE")
kubectl create namespace "$group_ns" --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f "$GROUP_SAMPLE"
if ! kubectl -n "$group_ns" wait --for=condition=GenesisCeremonyComplete "snd/$group" --timeout=180s \
   || ! kubectl -n "$group_ns" wait --for=jsonpath='{.status.phase}'=Ready "snd/$group" --timeout=120s; then
  echo "the group did not form its network; controller log:"; tail -15 "$work/controller.log"
  kubectl -n "$group_ns" get snd "$group" -o yaml; exit 1
fi
kubectl -n "$group_ns" get snd,snode
echo "== the group's plan ran in the sandbox; its status"
kubectl -n "$group_ns" get snd "$group" -o jsonpath='{"genesisHash: "}{.status.genesisHash}{"\ngenesisS3URI: "}{.status.genesisS3URI}{"\n"}'
echo "== peers of $group-0 (set by collect-and-set-peers after every validator ran)"
kubectl -n "$group_ns" get snode "$group-0" -o jsonpath='{range .spec.peers[0].static.addresses[*]}{"  "}{@}{"\n"}{end}'
echo "demo: SeiNodeDeployment $group formed a network of $(kubectl -n "$group_ns" get snd "$group" -o jsonpath='{.status.readyReplicas}') validators"
