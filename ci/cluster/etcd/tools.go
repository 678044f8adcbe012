//go:build tools

// The command ci/cluster/build.sh builds (etcd's main package is the module root).
package tools

import _ "go.etcd.io/etcd/server/v3"
