// CoreDNS with only the plugins the test cluster's Corefile uses: the full build compiles every
// cloud provider's SDK, which costs minutes on a cold machine and serves nothing here.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The order in which the plugins run, a subset of CoreDNS's own plugin.cfg order.
var directives = []string{"errors", "log", "health", "ready", "kubernetes", "cache"}

func init() { dnsserver.Directives = directives }

func main() { coremain.Run() }
