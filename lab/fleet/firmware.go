package fleet

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/reprov/reprov/bmc"
)

// decideLocked is the node's firmware: where this boot goes (BootNetwork,
// BootDisk, or "" for nowhere) and why.
//
//   - ipmi, flaky, dead-bmc, redfish (legacy BIOS): a valid PXE override
//     → network; a valid disk override → the disk if bootable; else the
//     disk if its boot sector is bootable (55AA at 510 and boot code),
//     else the network.
//   - hp-dl360-g7, wrong-identity: every override is ignored; the disk if
//     its boot sector is bootable, else the network.
//   - uefi: an IPMI PXE override with the EFI bit → network (a legacy
//     force_pxe is ignored); then BootNext (consumed), then BootOrder:
//     the disk entry while a GPT header is intact, the network entries.
func (n *Node) decideLocked(ov Override) (target, reason string) {
	if n.model.UEFI() {
		return n.decideUEFILocked(ov)
	}
	bootable := n.disk.legacyBootable()
	diskOrNet := func(why string) (string, string) {
		if bootable {
			return BootDisk, why + "; the boot sector is bootable"
		}
		return BootNetwork, why + "; no bootable boot sector (55AA and boot code), next in the boot order: the network"
	}
	switch {
	case !ov.Valid:
		return diskOrNet("no boot override")
	case n.ignoresOverride():
		return diskOrNet(fmt.Sprintf("boot override %s accepted by the BMC and ignored by the board", ov.Device))
	case n.hasFault(FaultOverrideSecondCycle) && n.overrideBoots == 0:
		n.overrideBoots++
		return diskOrNet(fmt.Sprintf("boot override %s ignored on its first boot (fault %s)", ov.Device, FaultOverrideSecondCycle))
	case ov.Device == bmc.BootPXE:
		return BootNetwork, "PXE boot override (" + ov.Source + ")"
	case ov.Device == bmc.BootDisk:
		return diskOrNet("disk boot override (" + ov.Source + ")")
	}
	return diskOrNet(fmt.Sprintf("boot override %s not supported by the lab firmware", ov.Device))
}

func (n *Node) decideUEFILocked(ov Override) (target, reason string) {
	e := n.efi
	bootable := n.disk.uefiBootable()
	var note string
	switch {
	case ov.Valid && ov.Device == bmc.BootPXE && ov.EFI:
		e.current = e.networkEntry().num
		return BootNetwork, "PXE boot override with the EFI bit (" + ov.Source + ")"
	case ov.Valid && ov.Device == bmc.BootPXE:
		note = "legacy PXE override ignored (no EFI bit); "
	case ov.Valid && ov.Device == bmc.BootDisk && bootable:
		e.current = "0001"
		return BootDisk, "disk boot override (" + ov.Source + ")"
	}
	if next := e.bootNext; next != "" {
		e.bootNext = ""
		if x, ok := e.entry(next); ok {
			switch {
			case x.network:
				e.current = x.num
				return BootNetwork, note + "BootNext=" + x.num + " (" + x.desc + ")"
			case bootable:
				e.current = x.num
				return BootDisk, note + "BootNext=" + x.num + " (" + x.desc + ")"
			}
			note += "BootNext=" + x.num + " failed (no GPT header); "
		}
	}
	for _, num := range e.order {
		x, ok := e.entry(num)
		switch {
		case !ok:
		case x.network:
			e.current = x.num
			return BootNetwork, note + "BootOrder: Boot" + x.num + " (" + x.desc + ") after the disk entry failed (no GPT header)"
		case bootable:
			e.current = x.num
			return BootDisk, note + "BootOrder: Boot" + x.num + " (" + x.desc + ")"
		}
	}
	return "", note + "no boot entry could boot"
}

// netboot is the node's iPXE: GET <landing>/boot/ipxe?mac=MAC, retried
// with backoff until a 2xx answer, or until the boot ends (power-off,
// another boot).
func (n *Node) netboot(ctx context.Context, gen uint64) {
	l := n.lab
	wait := l.cfg.NetbootRetry
	for {
		status, body, err := n.landingRequest(ctx)
		if ctx.Err() != nil {
			return
		}
		if err == nil && status/100 == 2 {
			n.mu.Lock()
			if gen != n.gen {
				n.mu.Unlock()
				return
			}
			n.st.Landings++
			n.st.State = StateLanded
			n.st.LandingScript = truncateScript(body)
			local := bootsLocal(body)
			if local {
				n.st.LastReason += "; the landing script boots the local disk"
			}
			n.notifyLocked()
			n.mu.Unlock()
			l.log.Debug("landed", "node", n.name, "mac", n.mac)
			if local {
				n.bootLocal(ctx, gen)
			}
			return
		}
		l.log.Debug("landing endpoint did not answer", "node", n.name, "status", status, "err", err, "retry_in", wait)
		// Jitter ±25 %, so a rack booting at once spreads out.
		d := wait + time.Duration(rand.Int64N(int64(wait)/2+1)) - wait/4
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		wait = min(2*wait, l.cfg.NetbootRetryMax)
	}
}

// landingRequest is one request to the landing endpoint.
func (n *Node) landingRequest(ctx context.Context) (int, string, error) {
	base := n.lab.LandingURL()
	n.mu.Lock()
	n.st.LandingRequests++
	n.notifyLocked()
	n.mu.Unlock()
	// iPXE expands ${net0/mac} as hex with colons.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/boot/ipxe?mac="+n.mac, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("User-Agent", landingUserAgent)
	resp, err := n.lab.httpClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxLandingScriptBytes))
	if err != nil {
		return resp.StatusCode, "", err
	}
	return resp.StatusCode, string(b), nil
}

func truncateScript(s string) string {
	const max = 4096
	if len(s) > max {
		return s[:max] + "…"
	}
	return s
}

// bootsLocal reports whether an iPXE script hands the boot back to the
// local disk (sanboot of the first drive, or exit back to the firmware's
// boot order) rather than loading an installer.
func bootsLocal(script string) bool {
	local := false
	for line := range strings.SplitSeq(script, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ":") {
			continue
		}
		switch f[0] {
		case "kernel", "initrd", "imgfetch", "module", "chain", "imgexec":
			return false
		case "sanboot", "exit":
			local = true
		}
	}
	return local
}

// bootLocal continues the boot order after a network boot that handed
// back: the disk if bootable, else nothing.
func (n *Node) bootLocal(ctx context.Context, gen uint64) {
	n.mu.Lock()
	if gen != n.gen {
		n.mu.Unlock()
		return
	}
	if !n.Bootable() {
		n.st.State = StateHalted
		n.st.LastReason += ", which is not bootable"
		n.notifyLocked()
		n.mu.Unlock()
		return
	}
	n.st.LastBoot = BootDisk
	n.st.DiskBoots++
	n.st.State = StateBooting
	n.notifyLocked()
	n.mu.Unlock()
	n.bootOS(ctx, gen, n.osBootTime())
}
