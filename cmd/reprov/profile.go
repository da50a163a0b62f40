package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"
)

// startProfiling starts the profiles asked for by the environment, for
// measuring the command an operator runs (docs/performance.md):
// REPROV_CPUPROFILE=FILE writes a CPU profile (go tool pprof),
// REPROV_TRACE=FILE an execution trace (go tool trace),
// REPROV_HEAPPROFILE=FILE the heap profile at the process's peak heap
// (go tool pprof -sample_index=inuse_space). It returns the function that
// stops them and writes the files.
func startProfiling(getenv func(string) string) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	if path := getenv("REPROV_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return stop, fmt.Errorf("REPROV_CPUPROFILE: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return stop, fmt.Errorf("REPROV_CPUPROFILE: %w", err)
		}
		stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
	}
	if path := getenv("REPROV_TRACE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return stop, fmt.Errorf("REPROV_TRACE: %w", err)
		}
		if err := trace.Start(f); err != nil {
			f.Close()
			return stop, fmt.Errorf("REPROV_TRACE: %w", err)
		}
		stops = append(stops, func() { trace.Stop(); f.Close() })
	}
	if path := getenv("REPROV_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return stop, fmt.Errorf("REPROV_HEAPPROFILE: %w", err)
		}
		stops = append(stops, peakHeapProfile(f, time.Second))
	}
	return stop, nil
}

// peakHeapProfile samples the heap in use every interval and keeps the
// heap profile taken at its highest sample: what is live at the peak is
// what a memory limit has to hold, and at exit most of it is gone. The
// returned function stops sampling and writes that profile to f.
func peakHeapProfile(f *os.File, interval time.Duration) (stop func()) {
	var p peakHeap
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				p.sample()
			}
		}
	}()
	return func() {
		close(done)
		<-stopped
		p.sample()
		err := p.write(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "reprov: REPROV_HEAPPROFILE:", err)
			return
		}
		fmt.Fprintf(os.Stderr, "reprov: REPROV_HEAPPROFILE: %s: the heap at its peak; the Go runtime's memory then: %s\n", f.Name(), p.classes())
	}
}

// peakClasses are the Go runtime's memory classes read with each peak
// profile: what the process held besides the live heap.
var peakClasses = []struct{ name, metric string }{
	{"heap objects", "/memory/classes/heap/objects:bytes"},
	{"heap not yet collected or free", "/memory/classes/heap/unused:bytes"},
	{"free heap", "/memory/classes/heap/free:bytes"},
	{"goroutine stacks", "/memory/classes/heap/stacks:bytes"},
	{"runtime metadata and other", "/memory/classes/metadata/other:bytes"},
	{"total mapped, not yet released", "/memory/classes/total:bytes"},
}

// peakHeap holds the heap profile of the highest heap sampled so far,
// and the runtime's memory classes (peakClasses) read with it.
type peakHeap struct {
	metrics []metrics.Sample
	atPeak  []uint64
	peak    uint64
	prof    bytes.Buffer
	err     error
}

// sample reads the heap in use and, when it is 5 % above the peak (or
// nothing was taken yet), takes the heap profile.
func (p *peakHeap) sample() {
	if p.metrics == nil {
		for _, c := range peakClasses {
			p.metrics = append(p.metrics, metrics.Sample{Name: c.metric})
		}
	}
	metrics.Read(p.metrics)
	v := p.metrics[0].Value.Uint64() // heap objects
	if p.prof.Len() > 0 && v <= p.peak+p.peak/20 {
		return
	}
	p.peak = v
	p.atPeak = p.atPeak[:0]
	for _, m := range p.metrics {
		var b uint64
		if m.Value.Kind() == metrics.KindUint64 {
			b = m.Value.Uint64()
		}
		p.atPeak = append(p.atPeak, b)
	}
	p.prof.Reset()
	p.err = pprof.Lookup("heap").WriteTo(&p.prof, 0)
}

// classes describes the memory classes read with the peak profile.
func (p *peakHeap) classes() string {
	var b strings.Builder
	for i, v := range p.atPeak {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %.1f MiB", peakClasses[i].name, float64(v)/(1<<20))
	}
	return b.String()
}

// write writes the profile taken at the peak.
func (p *peakHeap) write(w io.Writer) error {
	if p.err != nil {
		return p.err
	}
	_, err := w.Write(p.prof.Bytes())
	return err
}
