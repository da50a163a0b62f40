// Package window is reprov's scheduled reimaging windows (docs/windows.md):
// a named schedule (cron in a time zone, or one start time) over a
// selection of nodes, opened for a duration, with a cutoff before its end
// after which no node starts, admitted in rack-aware batches behind an
// optional gate, with a failure budget that stops it.
//
// The Scheduler runs in every controller (reprov serve); each occurrence of
// a window is one row in the job store, created once whatever the number
// of controllers, and worked by the controller holding its lease. Every
// rule is decided on the Scheduler's clock (Config.Now), so tests drive
// it without waiting; the cutoff is also enforced by the store where node
// jobs are claimed, so it holds on every controller.
package window

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	// The tz database is embedded: --tz works on controllers without
	// /usr/share/zoneinfo (minimal containers).
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// Selection picks the nodes of a window from the controller's inventory,
// as the CLI's selection arguments do.
type Selection struct {
	// Names are node names or shell globs.
	Names []string `json:"names,omitempty"`
	// Racks keeps the nodes of these racks.
	Racks []string `json:"racks,omitempty"`
	// Selector is a label selector, e.g. "role=web".
	Selector string `json:"selector,omitempty"`
	// All selects every node (narrowed by Racks and Selector).
	All bool `json:"all,omitempty"`
}

// Text is the selection as the CLI writes it.
func (s Selection) Text() string {
	parts := append([]string{}, s.Names...)
	for _, r := range s.Racks {
		parts = append(parts, "--rack "+r)
	}
	if s.Selector != "" {
		parts = append(parts, "--selector "+s.Selector)
	}
	if s.All {
		parts = append(parts, "--all")
	}
	return strings.Join(parts, " ")
}

// Empty reports whether the selection selects nothing.
func (s Selection) Empty() bool {
	return len(s.Names) == 0 && len(s.Racks) == 0 && s.Selector == "" && !s.All
}

// Amount is a count or a percentage of a window's nodes ("8", "25%").
type Amount struct {
	N       int
	Percent float64
}

// ParseAmount parses "N" or "P%" (what names the flag, for the error).
func ParseAmount(what, s string) (Amount, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return Amount{}, nil
	}
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(p, 64)
		if err != nil || f <= 0 || f > 100 || math.IsNaN(f) {
			return Amount{}, fmt.Errorf("%s %q: want a percentage in (0, 100], e.g. 25%%", what, s)
		}
		return Amount{Percent: f}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return Amount{}, fmt.Errorf("%s %q: want a positive number of nodes or a percentage, e.g. 8 or 25%%", what, s)
	}
	return Amount{N: n}, nil
}

// IsZero reports whether no amount was given.
func (a Amount) IsZero() bool { return a.N == 0 && a.Percent == 0 }

// Of is the amount out of total nodes: a percentage rounds up, and is at
// least 1 (0: no amount given).
func (a Amount) Of(total int) int {
	switch {
	case a.N > 0:
		return a.N
	case a.Percent > 0:
		return max(1, int(math.Ceil(a.Percent*float64(total)/100-1e-9)))
	}
	return 0
}

func (a Amount) String() string {
	switch {
	case a.N > 0:
		return strconv.Itoa(a.N)
	case a.Percent > 0:
		return strconv.FormatFloat(a.Percent, 'f', -1, 64) + "%"
	}
	return ""
}

// MarshalJSON writes the amount as its text ("8", "25%", "").
func (a Amount) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

// UnmarshalJSON reads the amount's text.
func (a *Amount) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return err
		}
		s = strconv.Itoa(n)
	}
	v, err := ParseAmount("amount", s)
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// Duration is a time.Duration written as Go's text ("4h0m0s").
type Duration time.Duration

// MarshalJSON writes the duration's text.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads "4h", "30m" (or nanoseconds as a number).
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return err
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Spec is a window as an operator defines it (reprov window create).
type Spec struct {
	Name      string    `json:"name"`
	Selection Selection `json:"selection"`
	// Cron is a five-field cron expression ("0 2 * * SAT") read in TZ; or
	// At, one start time. Exactly one is set.
	Cron string    `json:"cron,omitempty"`
	At   time.Time `json:"at,omitzero"`
	// TZ is the time zone of Cron (Go's tz database name; default UTC).
	TZ string `json:"tz,omitempty"`
	// Duration is how long each occurrence is open.
	Duration Duration `json:"duration"`
	// Cutoff: no node starts later than Duration-Cutoff after the start.
	Cutoff Duration `json:"cutoff,omitempty"`
	// Batch is how many nodes are admitted at a time (default: all).
	Batch Amount `json:"batch"`
	// MaxParallel and PerRack are the limits of each batch's run.
	MaxParallel int `json:"max_parallel,omitempty"`
	PerRack     int `json:"per_rack,omitempty"`
	// MaxFailures is the failure budget of an occurrence (default: none).
	MaxFailures Amount `json:"max_failures"`
	// Playbook, when set, must be the playbook of every selected node.
	Playbook string `json:"playbook,omitempty"`
	// GateHook is an executable run before each batch and every minute;
	// exit 0 lets the window go on.
	GateHook string `json:"gate_hook,omitempty"`
	// GatePrometheus is a Prometheus server whose GateQuery must return
	// nothing for the window to go on.
	GatePrometheus string `json:"gate_prometheus,omitempty"`
	GateQuery      string `json:"gate_query,omitempty"`
}

// HasGate reports whether the window has a gate.
func (s Spec) HasGate() bool { return s.GateHook != "" || s.GatePrometheus != "" }

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// cronParser reads five-field expressions and the @daily-style
// descriptors (not @every: a window opens at wall-clock times).
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Validate checks the spec; errors name the flag (or field) at fault.
func (s Spec) Validate() error {
	var errs []error
	if !nameRE.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("name %q: want lower-case letters, digits, '.', '_' or '-' (at most 63)", s.Name))
	}
	if s.Selection.Empty() {
		errs = append(errs, errors.New("selection: give node names, --rack, --selector or --all"))
	}
	switch {
	case s.Cron == "" && s.At.IsZero():
		errs = append(errs, errors.New("--cron or --at: a window needs a schedule"))
	case s.Cron != "" && !s.At.IsZero():
		errs = append(errs, errors.New("--cron and --at: give one of them"))
	case s.Cron != "":
		if _, err := s.schedule(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.TZ != "" {
		if _, err := time.LoadLocation(s.TZ); err != nil {
			errs = append(errs, fmt.Errorf("--tz %q: not in the time zone database: %w", s.TZ, err))
		}
	}
	if s.Duration <= 0 {
		errs = append(errs, fmt.Errorf("--duration %s: want a positive duration, e.g. 4h", time.Duration(s.Duration)))
	}
	if s.Cutoff < 0 || (s.Duration > 0 && s.Cutoff >= s.Duration) {
		errs = append(errs, fmt.Errorf("--cutoff %s: want at least 0 and less than --duration %s", time.Duration(s.Cutoff), time.Duration(s.Duration)))
	}
	if s.MaxParallel < 0 || s.PerRack < 0 {
		errs = append(errs, errors.New("--max-parallel and --per-rack: want 0 (no limit) or more"))
	}
	if (s.GatePrometheus == "") != (s.GateQuery == "") {
		errs = append(errs, errors.New("--gate-prometheus and --gate-query: give both or neither"))
	}
	if s.GatePrometheus != "" {
		u, err := url.Parse(s.GatePrometheus)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			shown := s.GatePrometheus // never echo a password back
			if err == nil {
				shown = u.Redacted()
			} else if strings.Contains(shown, "@") {
				shown = "(a URL with credentials)"
			}
			errs = append(errs, fmt.Errorf("--gate-prometheus %q: want http(s)://host:port without credentials", shown))
		}
	}
	if s.GateHook != "" {
		if err := checkHook(s.GateHook); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkHook refuses a gate hook anyone but its owner could change.
func checkHook(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("--gate-hook %q: want an absolute path", path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--gate-hook: %w", err)
	}
	switch m := fi.Mode(); {
	case !m.IsRegular():
		return fmt.Errorf("--gate-hook %s: not a regular file", path)
	case m.Perm()&0o111 == 0:
		return fmt.Errorf("--gate-hook %s: not executable", path)
	case m.Perm()&0o022 != 0:
		return fmt.Errorf("--gate-hook %s: writable by group or others (mode %o): anyone who can write it could stop or release a window", path, m.Perm())
	}
	return nil
}

// CheckAt refuses a one-off window whose cutoff has already passed at now
// (it could only ever be recorded as missed).
func (s Spec) CheckAt(now time.Time) error {
	if s.At.IsZero() {
		return nil
	}
	if _, cut := s.Bounds(s.At); !now.Before(cut) {
		return fmt.Errorf("--at %s: the window's cutoff (%s) has already passed", s.At.Format(time.RFC3339), cut.Format(time.RFC3339))
	}
	return nil
}

// Location is the window's time zone (UTC by default).
func (s Spec) Location() *time.Location {
	if s.TZ == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(s.TZ)
	if err != nil {
		return time.UTC
	}
	return loc
}

func (s Spec) schedule() (*cron.SpecSchedule, error) {
	sched, err := cronParser.Parse(s.Cron)
	if err != nil {
		return nil, fmt.Errorf("--cron %q: %w", s.Cron, err)
	}
	spec, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return nil, fmt.Errorf("--cron %q: want a five-field expression or @daily, @weekly…, not @every", s.Cron)
	}
	spec.Location = s.Location()
	return spec, nil
}

// Starts returns the window's occurrence starts in (from, to], oldest
// first, at most limit of them (the newest ones).
func (s Spec) Starts(from, to time.Time, limit int) []time.Time {
	if !s.At.IsZero() {
		if s.At.After(from) && !s.At.After(to) {
			return []time.Time{s.At}
		}
		return nil
	}
	sched, err := s.schedule()
	if err != nil {
		return nil
	}
	var out []time.Time
	for t := sched.Next(from); !t.IsZero() && !t.After(to); t = sched.Next(t) {
		out = append(out, t)
		if limit > 0 && len(out) > limit {
			out = out[1:]
		}
	}
	return out
}

// Next is the window's first occurrence start after t (zero: none).
func (s Spec) Next(t time.Time) time.Time {
	if !s.At.IsZero() {
		if s.At.After(t) {
			return s.At
		}
		return time.Time{}
	}
	sched, err := s.schedule()
	if err != nil {
		return time.Time{}
	}
	return sched.Next(t)
}

// Bounds are an occurrence's end and cutoff for its start.
func (s Spec) Bounds(start time.Time) (end, cutoff time.Time) {
	end = start.Add(time.Duration(s.Duration))
	return end, end.Add(-time.Duration(s.Cutoff))
}
