package ipmi_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/reprov/reprov/bmc"
	"github.com/reprov/reprov/bmc/ipmi"
	"github.com/reprov/reprov/lab/ipmibmc"
	"github.com/reprov/reprov/lab/ipmisim"
	"github.com/reprov/reprov/lab/labtool"
	"github.com/reprov/reprov/lab/udpproxy"
)

// proxied starts a go-ipmi BMC behind a fault-injecting UDP proxy and
// returns an endpoint through the proxy.
func proxied(t *testing.T, cfg ipmibmc.Config, opts bmc.Options) (*ipmibmc.BMC, *udpproxy.Proxy, bmc.Endpoint) {
	t.Helper()
	return proxiedSeed(t, cfg, opts, 42)
}

// proxiedSeed is proxied with the proxy's loss pattern chosen by seed.
func proxiedSeed(t *testing.T, cfg ipmibmc.Config, opts bmc.Options, seed uint64) (*ipmibmc.BMC, *udpproxy.Proxy, bmc.Endpoint) {
	t.Helper()
	b := startBMC(t, cfg)
	p, err := udpproxy.Start(context.Background(), udpproxy.Config{Target: b.Addr(), Seed: seed})
	if err != nil {
		t.Fatalf("start proxy: %v", err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return b, p, endpoint(p.Host(), p.Port(), b.Username(), b.Password(), opts)
}

// pxeAndCycle is reprov's out-of-band step on one node: a machine that is
// off is powered on instead of cycled.
func pxeAndCycle(ctx context.Context, c bmc.Client) error {
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy}); err != nil {
		return err
	}
	err := c.SetPower(ctx, bmc.ActionCycle)
	if errors.Is(err, bmc.ErrPoweredOff) {
		return c.SetPower(ctx, bmc.ActionOn)
	}
	return err
}

func wantErr(t *testing.T, err, sentinel error, temporary bool) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v, want %v", err, sentinel)
	}
	if got := bmc.IsTemporary(err); got != temporary {
		t.Errorf("error %v: temporary=%v, want %v", err, got, temporary)
	}
	var op *bmc.OpError
	if !errors.As(err, &op) || op.BMC == "" {
		t.Errorf("error %v does not say which BMC", err)
	}
}

// releasedAtOnce checks that the BMC's session table is empty well before
// its inactivity timeout (2 s, evicted 3–6 s later) could have emptied it:
// reprov released the slot itself.
func releasedAtOnce(t *testing.T, b *ipmibmc.BMC) {
	t.Helper()
	labtool.Eventually(t, time.Second, "the session slot released by the client", func() bool { return b.ActiveSessions() == 0 })
}

func TestSingleLostDatagramsAreRetransmitted(t *testing.T) {
	b, p, ep := proxied(t, ipmibmc.Config{}, bmc.Options{Timeout: 600 * time.Millisecond})
	ctx := context.Background()

	p.DropNext(udpproxy.Requests, 1) // the first handshake message
	c, err := ipmi.Open(ctx, ep, testLogger(t))
	if err != nil {
		t.Fatalf("open with one lost request: %v", err)
	}
	before := p.Stats()
	p.DropNext(udpproxy.Responses, 1) // the answer to parameter 3
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE}); err != nil {
		t.Fatalf("set boot override with one lost response: %v", err)
	}
	d := p.Stats().Sub(before)
	// Parameter 3, parameter 5, read back: three exchanges, one sent twice.
	if d.RequestsReceived != 4 || d.ResponsesDropped != 1 {
		t.Errorf("set boot override took %d requests (%d responses dropped), want 4 (1)", d.RequestsReceived, d.ResponsesDropped)
	}
	if got := b.Machine().BootDevice(); got != bmc.BootPXE {
		t.Errorf("machine's boot device %q, want pxe", got)
	}
	if err := c.SetPower(ctx, bmc.ActionOn); err != nil {
		t.Fatalf("power on: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	noSessionsLeft(t, b)
}

func TestRandomLossSucceedsWithinRetries(t *testing.T) {
	b, p, ep := proxied(t, ipmibmc.Config{}, bmc.Options{Timeout: 400 * time.Millisecond})
	p.SetLoss(udpproxy.Both, 0.2)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// What bmc's retry wrapper does: retry whole operations on temporary
	// errors, a bounded number of times. Every operation here is
	// idempotent (power cycle is not, see TestLostCycleAnswerIsNotRetried).
	retry := func(what string, fn func() error) {
		t.Helper()
		var err error
		for attempt := 1; attempt <= 20; attempt++ {
			if err = fn(); err == nil || !bmc.IsTemporary(err) {
				break
			}
			t.Logf("%s, attempt %d: %v", what, attempt, err)
		}
		if err != nil {
			t.Fatalf("%s through 20%% loss: %v", what, err)
		}
	}
	var c bmc.Client
	retry("open", func() (err error) { c, err = ipmi.Open(ctx, ep, testLogger(t)); return err })
	retry("set pxe", func() error {
		_, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeUEFI})
		return err
	})
	retry("power on", func() error { return c.SetPower(ctx, bmc.ActionOn) })
	retry("power state", func() error {
		st, err := c.PowerState(ctx)
		if err == nil && st != bmc.PowerOn {
			t.Errorf("power state %q after power on", st)
		}
		return err
	})
	boots := b.Machine().Boots()
	if len(boots) != 1 || boots[0].Device != bmc.BootPXE || !boots[0].EFI {
		t.Errorf("machine's boots %+v, want one EFI PXE boot", boots)
	}
	if s := p.Stats(); s.RequestsDropped == 0 || s.ResponsesDropped == 0 {
		t.Errorf("loss did not hit both directions (%+v): the test proves little", s)
	}
	p.Heal()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	noSessionsLeft(t, b)
}

// TestThirtyPercentLossEachWay: through a link that loses 30 % of the
// datagrams each way, every one of 30 BMCs gets its session opened and its
// override set and read back within bmc's default retry policy (the fault
// matrix's loss30 nodes, docs/reliability.md), and no session is left open
// once the link heals.
func TestThirtyPercentLossEachWay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 30 {
		b, p, ep := proxiedSeed(t, ipmibmc.Config{}, bmc.Options{Timeout: time.Second}, uint64(i+1))
		p.SetLoss(udpproxy.Both, 0.3)
		wg.Go(func() {
			var (
				c     bmc.Client
				tries int
			)
			err := bmc.Retry(ctx, bmc.RetryPolicy{Base: 50 * time.Millisecond}, nil, "open", func(ctx context.Context) (err error) {
				tries++
				c, err = ipmi.Open(ctx, ep, testLogger(t))
				return err
			})
			if err != nil {
				t.Errorf("BMC %d: open through 30%% loss (%d tries): %v", i, tries, err)
				return
			}
			c = bmc.WithRetry(c, bmc.RetryPolicy{Base: 50 * time.Millisecond}, nil)
			if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeLegacy}); err != nil {
				t.Errorf("BMC %d: set boot override through 30%% loss: %v", i, err)
			}
			if got := b.Machine().BootDevice(); got != bmc.BootPXE {
				t.Errorf("BMC %d: machine's boot device %q, want pxe", i, got)
			}
			p.Heal()
			_ = c.Close(ctx)
			labtool.Eventually(t, 10*time.Second, "no session left open", func() bool { return b.ActiveSessions() == 0 })
		})
	}
	wg.Wait()
}

// TestSlowLinkReleasesRepeatedOpens: with a 300 ms round trip and a 500 ms
// exchange timeout, the first messages are sent again before their answers
// arrive (resend every 50 ms until a round trip is measured). Every Open
// Session Request the BMC receives opens a session in its four-slot table:
// the session must open, and the sessions the repeated requests opened must
// be released at once, not left to the BMC's timeout.
func TestSlowLinkReleasesRepeatedOpens(t *testing.T) {
	b, p, ep := proxied(t, ipmibmc.Config{}, bmc.Options{Timeout: 500 * time.Millisecond})
	p.SetDelay(150 * time.Millisecond)
	ctx := context.Background()
	c, err := ipmi.Open(ctx, ep, testLogger(t))
	if err != nil {
		t.Fatalf("open through a 300 ms round trip with a 500 ms timeout: %v", err)
	}
	if s := p.Stats(); s.RequestsReceived <= 5 {
		t.Errorf("%d requests for a session setup: nothing was sent again, the test proves little", s.RequestsReceived)
	}
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE}); err != nil {
		t.Fatalf("set boot override: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	releasedAtOnce(t, b) // half-open sessions included
}

func TestLostCycleAnswerIsNotRetried(t *testing.T) {
	b, p, ep := proxied(t, ipmibmc.Config{InitiallyOn: true}, bmc.Options{Timeout: 400 * time.Millisecond})
	ctx := context.Background()
	c, err := ipmi.Open(ctx, ep, testLogger(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	before := b.Machine().PowerOns()
	// The answer to the cycle (sent first, without a status read) is lost.
	reqs := p.Stats().RequestsReceived
	p.SetFilter(func(dir udpproxy.Direction, _ []byte) bool {
		return dir == udpproxy.Responses && p.Stats().RequestsReceived == reqs+1
	})
	err = c.SetPower(ctx, bmc.ActionCycle)
	wantErr(t, err, bmc.ErrNoAnswer, false)
	if got := b.Machine().PowerOns(); got != before+1 {
		t.Errorf("machine powered on %d times during the cycle, want exactly 1", got-before)
	}
	if got := p.Stats().RequestsReceived - reqs; got != 1 {
		t.Errorf("cycle sent %d requests, want 1 (the cycle, once)", got)
	}
	p.Heal()
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	noSessionsLeft(t, b)
}

func TestDelayWithinTimeout(t *testing.T) {
	b, p, ep := proxied(t, ipmibmc.Config{}, bmc.Options{Timeout: 2 * time.Second})
	p.SetDelay(100 * time.Millisecond)
	ctx := context.Background()
	c, err := ipmi.Open(ctx, ep, testLogger(t))
	if err != nil {
		t.Fatalf("open through 100 ms delay: %v", err)
	}
	if err := pxeAndCycle(ctx, c); err != nil {
		t.Fatalf("pxe and cycle through 100 ms delay: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := b.Machine().PowerOns(); got != 1 {
		t.Errorf("machine powered on %d times, want 1", got)
	}
	noSessionsLeft(t, b)
}

func TestTotalLossIsNoAnswer(t *testing.T) {
	b, p, ep := proxied(t, ipmibmc.Config{}, bmc.Options{Timeout: 300 * time.Millisecond})
	p.SetLoss(udpproxy.Both, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := ipmi.Open(ctx, ep, testLogger(t))
	wantErr(t, err, bmc.ErrNoAnswer, true)
	if ctx.Err() != nil {
		t.Fatalf("Open ran into the test's 30 s deadline instead of its own timeout")
	}
	// The message says what was not answered and how often it was sent,
	// not go-ipmi's "1 attempt" (the resends are below go-ipmi).
	if msg := err.Error(); !strings.Contains(msg, "Get Channel Authentication Capabilities (sent ") || strings.Contains(msg, "1 attempt") {
		t.Errorf("no-answer error %q: want the request named and its sends counted", msg)
	}
	// The first exchange, sent again every tenth of the timeout and never
	// past it: a silent BMC is not flooded.
	if s := p.Stats(); s.RequestsReceived < 2 || s.RequestsReceived > 10 {
		t.Errorf("%d requests sent to a silent BMC within a 300 ms timeout, want 2 to 10 (resent every 30 ms)", s.RequestsReceived)
	}
	noSessionsLeft(t, b)
}

func TestBMCThatNeverAnswers(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{})
	b.Faults().SetDropAll(true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := ipmi.Open(ctx, bmcEndpoint(b, bmc.Options{Timeout: 300 * time.Millisecond}), testLogger(t))
	wantErr(t, err, bmc.ErrNoAnswer, true)
	if ctx.Err() != nil {
		t.Fatalf("Open ran into the test's deadline instead of its own timeout")
	}
	if s := b.Stats(); s.Dropped == 0 || s.Sent != 0 {
		t.Errorf("BMC stats %+v: want datagrams dropped and none sent", s)
	}
	noSessionsLeft(t, b)
}

func TestNothingListening(t *testing.T) {
	port := labtool.FreeUDPPort(t, "127.0.0.1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := ipmi.Open(ctx, endpoint("127.0.0.1", port, "admin", "x", bmc.Options{Timeout: 300 * time.Millisecond}), testLogger(t))
	wantErr(t, err, bmc.ErrNoAnswer, true)
}

func TestWrongPassword(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{})
	ep := bmcEndpoint(b, bmc.Options{})
	ep.Password = "not-the-password"
	_, err := ipmi.Open(context.Background(), ep, testLogger(t))
	wantErr(t, err, bmc.ErrAuthentication, false)
	// Only suite 17 was tried: a refused password does not move on to 3.
	if s := b.Stats(); s.Received > 6 {
		t.Errorf("%d datagrams for a refused password, want at most 6", s.Received)
	}
	releasedAtOnce(t, b)
}

func TestWrongUser(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{})
	ep := bmcEndpoint(b, bmc.Options{})
	ep.Username = "nobody"
	_, err := ipmi.Open(context.Background(), ep, testLogger(t))
	wantErr(t, err, bmc.ErrAuthentication, false)
	noSessionsLeft(t, b)
}

func TestWrongPasswordIPMISim(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Config{})
	_, err := ipmi.Open(context.Background(), endpoint(sim.Host(), sim.Port(), sim.Username(), "not-the-password",
		bmc.Options{CipherSuites: []int{3}}), testLogger(t))
	wantErr(t, err, bmc.ErrAuthentication, false)
}

func TestCipherSuiteMismatchIPMISim(t *testing.T) {
	sim := ipmisim.Start(t, ipmisim.Config{})
	_, err := ipmi.Open(context.Background(), endpoint(sim.Host(), sim.Port(), sim.Username(), sim.Password(),
		bmc.Options{CipherSuites: []int{17}}), testLogger(t))
	wantErr(t, err, bmc.ErrCipherSuite, false)
}

func TestCipherSuiteFallback(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{CipherSuites: []int{3}})
	c := open(t, bmcEndpoint(b, bmc.Options{})) // default: 17, then 3
	if got := c.(*ipmi.Client).CipherSuite(); got != 3 {
		t.Errorf("session uses suite %d, want 3 (the BMC offers only 3)", got)
	}
	_, err := ipmi.Open(context.Background(), bmcEndpoint(b, bmc.Options{CipherSuites: []int{17}}), testLogger(t))
	wantErr(t, err, bmc.ErrCipherSuite, false)
	_ = c.Close(context.Background())
	noSessionsLeft(t, b)
}

func TestInsecureSuitesRefusedBeforeSending(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{CipherSuites: []int{0, 3}})
	for _, tc := range []struct {
		suites   []int
		sentinel error
	}{
		{[]int{0}, bmc.ErrInsecureRefused},
		{[]int{17, 3, 0}, bmc.ErrInsecureRefused},
		{[]int{2}, bmc.ErrUnsupported},
		{[]int{1}, bmc.ErrUnsupported},
	} {
		_, err := ipmi.Open(context.Background(), bmcEndpoint(b, bmc.Options{CipherSuites: tc.suites}), testLogger(t))
		wantErr(t, err, tc.sentinel, false)
	}
	if s := b.Stats(); s.Received != 0 {
		t.Errorf("the BMC received %d datagrams: a refused configuration must send nothing", s.Received)
	}
	// Opted in, suite 0 is tried (with a warning in the log) — and fails:
	// go-ipmi v0.9.1's client cannot verify RAKP 2 without an
	// authentication algorithm.
	_, err := ipmi.Open(context.Background(), bmcEndpoint(b, bmc.Options{CipherSuites: []int{0}, AllowInsecureIPMI: true}), testLogger(t))
	wantErr(t, err, bmc.ErrUnsupported, false)
	if s := b.Stats(); s.Received == 0 {
		t.Errorf("opted-in suite 0 was not tried")
	}
	noSessionsLeft(t, b)
}

func TestBusyIsTemporary(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{})
	ctx := context.Background()
	c := open(t, bmcEndpoint(b, bmc.Options{}))
	b.Faults().BusyNext(1)
	_, err := c.PowerState(ctx)
	wantErr(t, err, bmc.ErrBusy, true)
	if _, err := c.PowerState(ctx); err != nil {
		t.Fatalf("power state after the BMC stopped being busy: %v", err)
	}
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
	noSessionsLeft(t, b)

	// Busy during session setup (Set Session Privilege Level): Open fails,
	// and the session it had opened is closed.
	b.Faults().BusyNext(1)
	_, err = ipmi.Open(ctx, bmcEndpoint(b, bmc.Options{}), testLogger(t))
	wantErr(t, err, bmc.ErrBusy, true)
	releasedAtOnce(t, b)
}

func TestBootFlagTimeoutUnsupportedIsAWarning(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{BootFlagTimeoutUnsupported: true})
	c := open(t, bmcEndpoint(b, bmc.Options{}))
	res, err := c.SetBootOverride(context.Background(), bmc.BootOverride{Device: bmc.BootPXE})
	if err != nil {
		t.Fatalf("set pxe on a BMC without parameter 3: %v", err)
	}
	if len(res.Warnings) != 1 || res.Verified != bmc.VerifyFull {
		t.Errorf("result %+v: want one warning and full verification", res)
	}
	if b.Machine().BootDevice() != bmc.BootPXE {
		t.Errorf("override not stored")
	}
}

func TestBootFlagTimeout(t *testing.T) {
	for _, keep := range []bool{false, true} {
		b := startBMC(t, ipmibmc.Config{BootFlagTimeout: 300 * time.Millisecond})
		c := open(t, bmcEndpoint(b, bmc.Options{KeepBootFlagTimeout: keep}))
		ctx := context.Background()
		if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE}); err != nil {
			t.Fatalf("set pxe: %v", err)
		}
		if got := b.Machine().BootFlagTimeoutDisabled(); got == keep {
			t.Errorf("KeepBootFlagTimeout=%v: BMC's timeout disabled=%v", keep, got)
		}
		time.Sleep(400 * time.Millisecond) // past the BMC's boot-flag timeout
		o, err := c.BootOverride(ctx)
		if err != nil {
			t.Fatalf("read override: %v", err)
		}
		want := bmc.BootPXE
		if keep {
			want = bmc.BootNone // expired
		}
		if o.Device != want {
			t.Errorf("KeepBootFlagTimeout=%v: override after the timeout %q, want %q", keep, o.Device, want)
		}
	}
}

func TestOneTimeOverrideIsConsumedByTheBoot(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{InitiallyOn: true})
	var (
		mu     sync.Mutex
		booted []ipmibmc.BootFlags
	)
	b.Machine().OnBoot(func(f ipmibmc.BootFlags) {
		mu.Lock()
		defer mu.Unlock()
		booted = append(booted, f)
	})
	c := open(t, bmcEndpoint(b, bmc.Options{}))
	ctx := context.Background()
	if _, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeUEFI}); err != nil {
		t.Fatalf("set pxe: %v", err)
	}
	if err := c.SetPower(ctx, bmc.ActionCycle); err != nil {
		t.Fatalf("cycle: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(booted) != 1 || booted[0].Device != bmc.BootPXE || !booted[0].EFI || !booted[0].Valid {
		t.Fatalf("boots seen by the hook %+v, want one EFI PXE boot", booted)
	}
	o, err := c.BootOverride(ctx)
	if err != nil {
		t.Fatalf("read override: %v", err)
	}
	if o.Device != bmc.BootNone {
		t.Errorf("override after the boot %+v, want none (one-time)", o)
	}
	mu.Unlock()
	if err := c.SetPower(ctx, bmc.ActionReset); err != nil {
		t.Fatalf("reset: %v", err)
	}
	mu.Lock()
	if len(booted) != 2 || booted[1].Valid {
		t.Errorf("second boot %+v, want the default order", booted)
	}
}

func TestRevertedOverride(t *testing.T) {
	ctx := context.Background()
	b := startBMC(t, ipmibmc.Config{})
	c := open(t, bmcEndpoint(b, bmc.Options{}))

	// A BMC that answers "ok" and stores nothing.
	b.Faults().SetIgnoreBootWrites(true)
	res, err := c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE})
	wantErr(t, err, bmc.ErrReverted, false)
	if res.ReadBack.Device != bmc.BootNone {
		t.Errorf("result read-back %+v, want what the BMC holds (none)", res.ReadBack)
	}
	b.Faults().SetIgnoreBootWrites(false)

	// A BMC that reads back only the device (valid, persistent and EFI bits
	// read 0, like ipmi_sim): full verification reports it, device-only
	// accepts it.
	b.Faults().SetDeviceOnlyReadBack(true)
	_, err = c.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeUEFI})
	wantErr(t, err, bmc.ErrReverted, false)
	lenient := open(t, bmcEndpoint(b, bmc.Options{Verify: bmc.VerifyDeviceOnly}))
	res, err = lenient.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE, Mode: bmc.BootModeUEFI})
	if err != nil {
		t.Fatalf("device-only verification: %v", err)
	}
	if res.Verified != bmc.VerifyDeviceOnly || res.ReadBack.Device != bmc.BootPXE {
		t.Errorf("device-only result %+v", res)
	}
	off := open(t, bmcEndpoint(b, bmc.Options{Verify: bmc.VerifyOff}))
	res, err = off.SetBootOverride(ctx, bmc.BootOverride{Device: bmc.BootPXE})
	if err != nil || res.Verified != bmc.VerifyOff {
		t.Errorf("verify off: %+v, %v", res, err)
	}
}

func TestCancelMidOperation(t *testing.T) {
	b, p, ep := proxied(t, ipmibmc.Config{}, bmc.Options{Timeout: 5 * time.Second})
	c, err := ipmi.Open(context.Background(), ep, testLogger(t))
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The BMC got the request; its answer is lost and the caller gives up
	// while the client waits for it.
	var once sync.Once
	p.SetFilter(func(dir udpproxy.Direction, _ []byte) bool {
		if dir != udpproxy.Responses {
			return false
		}
		drop := false
		once.Do(func() {
			drop = true
			time.AfterFunc(50*time.Millisecond, cancel)
		})
		return drop
	})
	_, err = c.PowerState(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("power state cancelled mid-exchange: %v, want context.Canceled", err)
	}
	// Close with the cancelled context still closes the session.
	if err := c.Close(ctx); err != nil {
		t.Fatalf("close after cancellation: %v", err)
	}
	noSessionsLeft(t, b)
}

func TestCancelMidHandshake(t *testing.T) {
	b, p, ep := proxied(t, ipmibmc.Config{}, bmc.Options{Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Drop RAKP Message 2: the BMC has allocated a session, the client
	// waits for the key exchange when it is cancelled.
	p.SetFilter(func(dir udpproxy.Direction, pkt []byte) bool {
		if dir == udpproxy.Responses && len(pkt) > 5 && pkt[4] == 0x06 && pkt[5]&0x3f == 0x13 {
			cancel()
			return true
		}
		return false
	})
	_, err := ipmi.Open(ctx, ep, testLogger(t))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("open cancelled mid-handshake: %v, want context.Canceled", err)
	}
	// The half-open session is released at once (RAKP 3 with an error
	// status), not after the BMC's inactivity timeout.
	releasedAtOnce(t, b)
}

func TestNoSessionLeakUnderManyOpens(t *testing.T) {
	b := startBMC(t, ipmibmc.Config{MaxSessions: 2})
	ctx := context.Background()
	// Twice the session table: only works if each Close frees its slot.
	for i := 0; i < 4; i++ {
		c, err := ipmi.Open(ctx, bmcEndpoint(b, bmc.Options{}), testLogger(t))
		if err != nil {
			t.Fatalf("open %d: %v", i+1, err)
		}
		if _, err := c.PowerState(ctx); err != nil {
			t.Fatalf("power state: %v", err)
		}
		if err := c.Close(ctx); err != nil {
			t.Fatalf("close: %v", err)
		}
		if n := b.ActiveSessions(); n != 0 {
			t.Fatalf("after close %d: %d sessions open", i+1, n)
		}
	}
}
