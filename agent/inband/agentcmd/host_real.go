//go:build !reprov_fixture

package agentcmd

import "github.com/reprov/reprov/agent/inband/host"

// defaultHost is the real node. A normal build has no other.
func defaultHost() (host.Host, error) { return host.NewLocal(), nil }

// FixtureBuild reports whether this binary was built with the test-only
// fixture host (the reprov_fixture build tag). It is false in every
// normal build.
const FixtureBuild = false
