//go:build reprov_fixture

package agentcmd

import (
	"errors"

	"github.com/reprov/reprov/agent/inband/host"
	"github.com/reprov/reprov/agent/inband/host/fixture"
)

// fixtureLayout is the layout file of the fixture host, baked in at build
// time by tests:
//
//	go build -tags reprov_fixture -ldflags "-X github.com/reprov/reprov/agent/inband/agentcmd.fixtureLayout=/tmp/…/layout.json"
//
// It exists only under the reprov_fixture tag.
var fixtureLayout string

// defaultHost is the fixture host of a test build: never the real node.
func defaultHost() (host.Host, error) {
	if fixtureLayout == "" {
		return nil, errors.New("fixture build without a layout (build with -ldflags -X …agentcmd.fixtureLayout=FILE)")
	}
	return fixture.Load(fixtureLayout)
}

// FixtureBuild reports whether this binary was built with the test-only
// fixture host (the reprov_fixture build tag).
const FixtureBuild = true
