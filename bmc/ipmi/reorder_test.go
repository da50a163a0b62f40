package ipmi_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/connect"
	"github.com/reprov/reprov/bmc/ipmi"
	"github.com/reprov/reprov/lab/ipmibmc"
)

// reorderingRelay sits between one client and a BMC. The first RAKP
// Message 1 it sees is held back until the client has sent it again and
// the BMC has answered that second send; then the first is delivered. The
// BMC so handles the two sends in the opposite order to the client's, as
// a network that reorders datagrams, or a BMC that handles them
// concurrently, makes it do.
type reorderingRelay struct {
	ln, up *net.UDPConn

	mu     sync.Mutex
	client *net.UDPAddr
	held   []byte
	state  int // 0: no RAKP 1 yet, 1: first held, 2: second forwarded, 3: first delivered
}

func startReorderingRelay(t *testing.T, target string) *reorderingRelay {
	t.Helper()
	ln, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ta, err := net.ResolveUDPAddr("udp", target)
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, ta)
	if err != nil {
		t.Fatal(err)
	}
	r := &reorderingRelay{ln: ln, up: up}
	t.Cleanup(func() { ln.Close(); up.Close() })
	go r.requests()
	go r.answers()
	return r
}

func isRAKP(p []byte, payloadType byte) bool {
	return len(p) > 5 && p[0] == 0x06 && p[4] == 0x06 && p[5]&0x3f == payloadType
}

func (r *reorderingRelay) requests() {
	buf := make([]byte, 2048)
	for {
		n, from, err := r.ln.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p := append([]byte(nil), buf[:n]...)
		r.mu.Lock()
		r.client = from
		if isRAKP(p, 0x12) {
			switch r.state {
			case 0:
				r.held, r.state = p, 1
				r.mu.Unlock()
				continue
			case 1:
				r.state = 2
			}
		}
		r.mu.Unlock()
		_, _ = r.up.Write(p)
	}
}

func (r *reorderingRelay) answers() {
	buf := make([]byte, 2048)
	for {
		n, err := r.up.Read(buf)
		if err != nil {
			return
		}
		p := append([]byte(nil), buf[:n]...)
		r.mu.Lock()
		client := r.client
		var late []byte
		if r.state == 2 && isRAKP(p, 0x13) {
			late, r.state = r.held, 3
		}
		r.mu.Unlock()
		_, _ = r.ln.WriteToUDP(p, client)
		if late != nil {
			_, _ = r.up.Write(late)
		}
	}
}

func (r *reorderingRelay) reordered() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state == 3
}

func (r *reorderingRelay) endpoint(b *ipmibmc.BMC, opts bmc.Options) bmc.Endpoint {
	a := r.ln.LocalAddr().(*net.UDPAddr)
	return endpoint(a.IP.String(), a.Port, b.Username(), b.Password(), opts)
}

// TestReorderedRAKP1IsNotACredentialFailure: when RAKP Message 1 was sent
// twice and the BMC kept the random number of the send whose answer was
// not taken, it refuses RAKP Message 3 ("unauthorized name"). The
// credentials are right (RAKP Message 2 verified with them): the failure
// must be temporary, not "BMC refused the credentials", so that the
// session setup is tried again and the node goes on.
func TestReorderedRAKP1IsNotACredentialFailure(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{})
	opts := bmc.Options{Timeout: time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("one session setup", func(t *testing.T) {
		r := startReorderingRelay(t, b.Addr())
		c, err := ipmi.Open(ctx, r.endpoint(b, opts), testLogger(t))
		if !r.reordered() {
			t.Fatalf("the relay did not reorder the two RAKP Messages 1 (open: %v)", err)
		}
		if err == nil {
			c.Close(ctx)
			t.Fatal("the BMC accepted RAKP Message 3 although it handled the RAKP Messages 1 out of order: the test shows nothing")
		}
		if errors.Is(err, bmc.ErrAuthentication) || !bmc.IsTemporary(err) {
			t.Errorf("error %v: want a temporary failure, not a credential one", err)
		}
		if !strings.Contains(err.Error(), "RAKP message 1 was sent 2 times") {
			t.Errorf("error %v does not say what happened", err)
		}
		noSessionsLeft(t, b)
	})

	t.Run("with the retry an operator's command has", func(t *testing.T) {
		r := startReorderingRelay(t, b.Addr())
		c, _, err := connect.Open(ctx, r.endpoint(b, opts), nil, testLogger(t))
		if err != nil {
			t.Fatalf("open through connect: %v", err)
		}
		if !r.reordered() {
			t.Errorf("the relay did not reorder the two RAKP Messages 1")
		}
		if err := c.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
		noSessionsLeft(t, b)
	})
}
