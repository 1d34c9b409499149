// Pins the third-party CRDs the integration tests install (build.sh copies them from the Go
// module cache): the Gateway API's HTTPRoute and the Prometheus Operator's ServiceMonitor.
module github.com/sei-operator/sei-operator/tests/control-plane/crds

go 1.26.0

require (
	github.com/prometheus-operator/prometheus-operator v0.87.1
	sigs.k8s.io/gateway-api v1.6.3
)
