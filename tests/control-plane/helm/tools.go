//go:build tools

// Pins the Helm CLI in go.mod; build.sh builds it with `go build helm.sh/helm/v4/cmd/helm`.
package tools

import _ "helm.sh/helm/v4/cmd/helm"
