package main

import (
	"bytes"
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"

	"github.com/google/pprof/profile"
)

// heldAtPeak keeps the test's peak allocation live between two samples.
var heldAtPeak [][]byte

//go:noinline
func allocPeak() {
	for range 64 {
		heldAtPeak = append(heldAtPeak, make([]byte, 1<<20))
	}
}

// TestHeapProfileIsTakenAtThePeak: REPROV_HEAPPROFILE's profile is the one
// of the highest heap sampled, not of the heap at exit: 64 MiB held at one
// sample and freed before the next are in the profile written at the end.
func TestHeapProfileIsTakenAtThePeak(t *testing.T) {
	var p peakHeap
	allocPeak()
	runtime.GC() // the heap profile shows the heap as of the last GC
	p.sample()
	heldAtPeak = nil
	runtime.GC()
	p.sample()
	for i, m := range p.metrics {
		if m.Value.Kind() != metrics.KindUint64 || p.atPeak[i] == 0 {
			t.Errorf("memory class %s (%s): none read at the peak", peakClasses[i].name, m.Name)
		}
	}
	var buf bytes.Buffer
	if err := p.write(&buf); err != nil {
		t.Fatal(err)
	}
	prof, err := profile.Parse(&buf)
	if err != nil {
		t.Fatalf("parse the heap profile: %v", err)
	}
	inuse := slices.IndexFunc(prof.SampleType, func(st *profile.ValueType) bool { return st.Type == "inuse_space" })
	if inuse < 0 {
		t.Fatalf("no inuse_space in %v", prof.SampleType)
	}
	var atPeak int64
	for _, s := range prof.Sample {
		for _, loc := range s.Location {
			for _, l := range loc.Line {
				if l.Function != nil && l.Function.Name == "github.com/reprov/reprov/cmd/reprov.allocPeak" {
					atPeak += s.Value[inuse]
				}
			}
		}
	}
	if atPeak < 48<<20 {
		t.Errorf("allocPeak holds %d bytes in use in the profile, want the 64 MiB it held at the peak", atPeak)
	}
}
