//go:build tools

// The commands ci/cluster/build.sh builds; the build tag keeps this file out of every build
// but still lets `go mod tidy` record their dependencies.
package tools

import (
	_ "github.com/prometheus-operator/prometheus-operator/cmd/operator"
	_ "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader"
)
