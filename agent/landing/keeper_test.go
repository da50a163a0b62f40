package landing_test

import (
	"context"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/reprov/reprov/agent/landing"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/playbooks"
)

// TestKeeperHandsThePortOver: two controllers on one store keep one
// landing endpoint. The first binds; when it stops, the second binds within
// a second and answers /healthz; the store's endpoint coverage over the
// whole time has no gap beyond that bound.
func TestKeeperHandsThePortOver(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "reprov.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	listen := "127.0.0.1:" + strconv.Itoa(labtool.FreeTCPPort(t, "127.0.0.1"))
	url := "http://" + listen
	keep := func(controller string) *landing.Keeper {
		srv, err := landing.New(landing.Config{Jobs: st, URL: url,
			Profile: func(string) (playbooks.InstallProfile, error) { return profile, nil }})
		if err != nil {
			t.Fatal(err)
		}
		k, err := landing.Keep(ctx, landing.KeeperConfig{Server: srv, Listen: listen, Controller: controller, Sessions: st})
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	start := time.Now()
	first := keep("ctl-1")
	labtool.Eventually(t, 5*time.Second, "the first keeper to bind", func() bool { return first.Addr() != nil })
	second := keep("ctl-2")
	defer second.Stop()
	labtool.Eventually(t, 5*time.Second, "the second keeper to see the address in use", func() bool {
		ss, _ := st.EndpointSessions(ctx, start, time.Now())
		return len(ss) == 1 && ss[0].SeenAt.After(ss[0].BoundSince) // the first heartbeats
	})
	if second.Addr() != nil {
		t.Fatal("two keepers bound one address")
	}

	stopped := time.Now()
	first.Stop()
	labtool.Eventually(t, 5*time.Second, "the second keeper to take the address over", func() bool { return second.Addr() != nil })
	if took := time.Since(stopped); took > time.Second {
		t.Errorf("the second keeper took %v to bind; want within a second", took)
	}
	if err := landing.Probe(ctx, url); err != nil {
		t.Fatalf("after the take-over /healthz: %v", err)
	}
	resp, err := http.Get(url + "/boot/ipxe?mac=" + mac)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("after the take-over /boot/ipxe: %s", resp.Status)
	}

	labtool.Eventually(t, 5*time.Second, "the second keeper's heartbeat", func() bool {
		ss, _ := st.EndpointSessions(ctx, start, time.Now())
		return len(ss) == 2 && ss[1].Controller == "ctl-2" && ss[1].SeenAt.After(ss[1].BoundSince)
	})
	ss, err := st.EndpointSessions(ctx, start, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if ss[0].Controller != "ctl-1" || ss[0].Released.IsZero() {
		t.Errorf("the first keeper's session %+v: want ctl-1, released", ss[0])
	}
	covered, gaps, err := st.EndpointCoverage(ctx, ss[0].BoundSince, ss[1].SeenAt, time.Second)
	if err != nil || !covered {
		t.Errorf("endpoint coverage across the hand-over = %v, gaps %v, %v; want no gap over 1 s", covered, gaps, err)
	}
}

// TestKeepRefusesABadAddress: an address that cannot be bound for another
// reason than being in use is a configuration error, at once.
func TestKeepRefusesABadAddress(t *testing.T) {
	srv, err := landing.New(landing.Config{Jobs: failingJobs{}, URL: "http://127.0.0.1:1",
		Profile: func(string) (playbooks.InstallProfile, error) { return profile, nil }})
	if err != nil {
		t.Fatal(err)
	}
	for _, listen := range []string{"192.0.2.1:8086", "127.0.0.1:notaport"} {
		k, err := landing.Keep(context.Background(), landing.KeeperConfig{Server: srv, Listen: listen})
		if err == nil {
			k.Stop()
			t.Errorf("Keep(%s) = nil error, want a bind error", listen)
		} else if !strings.Contains(err.Error(), "landing.listen") {
			t.Errorf("Keep(%s) error %q does not name landing.listen", listen, err)
		}
	}
	// In use by something that is not an endpoint: Keep waits for it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k, err := landing.Keep(context.Background(), landing.KeeperConfig{Server: srv, Listen: ln.Addr().String(), BindRetry: 20 * time.Millisecond})
	if err != nil {
		t.Fatalf("Keep on an address in use: %v, want it to wait", err)
	}
	defer k.Stop()
	ln.Close()
	labtool.Eventually(t, 5*time.Second, "the keeper to bind the freed address", func() bool { return k.Addr() != nil })
}
