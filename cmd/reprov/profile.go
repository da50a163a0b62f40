package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"runtime/trace"
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
		}
	}
}

// peakHeap holds the heap profile of the highest heap sampled so far.
type peakHeap struct {
	metric [1]metrics.Sample
	peak   uint64
	prof   bytes.Buffer
	err    error
}

// sample reads the heap in use and, when it is 5 % above the peak (or
// nothing was taken yet), takes the heap profile.
func (p *peakHeap) sample() {
	p.metric[0].Name = "/memory/classes/heap/objects:bytes"
	metrics.Read(p.metric[:])
	v := p.metric[0].Value.Uint64()
	if p.prof.Len() > 0 && v <= p.peak+p.peak/20 {
		return
	}
	p.peak = v
	p.prof.Reset()
	p.err = pprof.Lookup("heap").WriteTo(&p.prof, 0)
}

// write writes the profile taken at the peak.
func (p *peakHeap) write(w io.Writer) error {
	if p.err != nil {
		return p.err
	}
	_, err := w.Write(p.prof.Bytes())
	return err
}
