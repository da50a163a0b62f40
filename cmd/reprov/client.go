package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/api"
	"github.com/reprov/reprov/agent/fleet"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// apiClient is the CLI as a client of reprov serve's API (server.url).
//
// server.url may list several controllers, comma-separated: every
// controller sharing the store answers for every run, so the client asks
// the first, and moves on to the next when one does not answer (a
// refused connection, a broken event stream, a controller draining for
// shutdown). docs/api.md ("Several controllers").
type apiClient struct {
	bases []string // scheme://host[:port], no trailing slash
	cur   int      // index in bases of the controller asked now
	token string
	hc    *http.Client
}

// base is the controller asked now.
func (c *apiClient) base() string { return c.bases[c.cur] }

// next moves on to the next controller of server.url (no-op with one).
func (c *apiClient) next() { c.cur = (c.cur + 1) % len(c.bases) }

// failover reports whether a request that failed with err may be sent to
// the next controller: a draining controller refused it (nothing done), a
// connection could not be made (nothing sent), or a read broke off.
func (c *apiClient) failover(method string, err error) bool {
	if len(c.bases) < 2 {
		return false
	}
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Status == http.StatusServiceUnavailable && ae.Body.Code == "shutting_down"
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return method == http.MethodGet
}

// apiError is an error answered by the API.
type apiError struct {
	Status int
	Body   api.Error
}

func (e *apiError) Error() string {
	return fmt.Sprintf("server: %s (%d %s)", e.Body.Message, e.Status, e.Body.Code)
}

// serverClient returns the API client when the CLI goes through a server
// (server.url, --server; --local clears it), else nil.
func (a *app) serverClient() (*apiClient, error) {
	var bases []string
	for _, part := range strings.Split(a.cfg.Server.URL, ",") {
		raw := strings.TrimRight(strings.TrimSpace(part), "/")
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
			shown := raw // never echo a password back
			if err == nil {
				shown = u.Redacted()
			} else if strings.Contains(shown, "@") {
				shown = "(a URL with credentials)"
			}
			return nil, usagef("server.url %q: want http(s)://host:port without credentials (several controllers: comma-separated)", shown)
		}
		bases = append(bases, raw)
	}
	if len(bases) == 0 {
		return nil, nil
	}
	ref := a.cfg.Server.Token
	if ref == "" {
		return nil, usagef("server.url is set but server.token is not: set it to env:NAME or file:PATH holding a token (reprov token create), or pass --local")
	}
	tok, err := a.resolveSecret(ref)
	if err != nil {
		return nil, usagef("server.token: %w", err)
	}
	return &apiClient{bases: bases, token: tok, hc: &http.Client{}}, nil
}

// resolveSecret resolves an env:/file: reference (env: through the app's
// getenv). Errors name the reference, never the value.
func (a *app) resolveSecret(ref string) (string, error) {
	s := inventory.NewSecret(ref)
	switch s.Kind() {
	case "env":
		name := strings.TrimPrefix(ref, "env:")
		v := a.getenv(name)
		if v == "" {
			v = os.Getenv(name)
		}
		if v == "" {
			return "", fmt.Errorf("%s: environment variable %s is not set", s.Ref(), name)
		}
		return strings.TrimSpace(v), nil
	case "file", "plain":
		v, err := s.Resolve()
		return strings.TrimSpace(v), err
	}
	return "", fmt.Errorf("%s: want env:NAME or file:PATH", s.Ref())
}

// do sends a JSON request and decodes the JSON answer into out, asking
// the next controller of server.url when one does not answer.
func (c *apiClient) do(ctx context.Context, method, path string, in, out any) error {
	var err error
	for range c.bases {
		err = c.doOnce(ctx, method, path, in, out)
		if err == nil || ctx.Err() != nil || !c.failover(method, err) {
			return err
		}
		c.next()
	}
	return err
}

// doOnce is do against the controller asked now.
func (c *apiClient) doOnce(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	base := c.base()
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("server %s: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("server %s: %w", base, err)
	}
	if resp.StatusCode >= 300 {
		e := &apiError{Status: resp.StatusCode}
		var eb struct {
			Error api.Error `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil && eb.Error.Code != "" {
			e.Body = eb.Error
		} else {
			e.Body.Code, e.Body.Message = "http_error", strings.TrimSpace(string(b))
		}
		return e
	}
	if out != nil {
		// The server indents its answers; raw JSON inside them (evidence,
		// step details) is then shown as the store holds it, compact.
		var compact bytes.Buffer
		if json.Compact(&compact, b) == nil {
			b = compact.Bytes()
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("server %s: %s %s: %w", base, method, path, err)
		}
	}
	return nil
}

// clientError maps an API error to the CLI's exit codes: the request's
// or the configuration's fault (4xx) is a usage error, else a failure.
func clientError(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500 && ae.Status != http.StatusConflict {
		return usageError(err)
	}
	return failedError(err)
}

// reinstallViaServer is `reprov reinstall` through the API: it submits the
// run, follows its event stream (reconnecting when the server goes away),
// then renders the run's report exactly as the in-process reinstall does.
func reinstallViaServer(ctx context.Context, a *app, c *apiClient, o reinstallOptions) error {
	if o.Timeout != 0 {
		return usagef("--timeout is not carried through the server yet: set the playbooks' timeouts, or pass --local")
	}
	if o.Fleet.MaxFailures < 0 {
		return usagef("--max-failures %d is negative", o.Fleet.MaxFailures)
	}
	req := api.CreateRun{
		Selection: api.Selection{Names: o.Selection.Names, Racks: o.Selection.Racks, Selector: o.Selection.Selector, All: o.Selection.All},
		Limits:    store.RunLimits{MaxParallel: a.cfg.MaxParallel, PerRack: a.cfg.PerRack, MaxFailures: o.Fleet.MaxFailures},
		Resume:    o.Resume,
		CreatedBy: createdBy(),
	}
	if !o.Yes {
		dry := req
		dry.DryRun = true
		var preview api.CreatedRun
		if err := c.do(ctx, http.MethodPost, api.Prefix+"/runs", dry, &preview); err != nil {
			return clientError(err)
		}
		if err := confirmRemote(a, c, preview.Nodes, o.Resume); err != nil {
			return err
		}
	}
	var created api.CreatedRun
	if err := c.do(ctx, http.MethodPost, api.Prefix+"/runs", req, &created); err != nil {
		return clientError(err)
	}
	run := created.Run
	a.log.Info("reinstall run submitted", "run", run.ID, "nodes", len(created.Nodes), "server", c.base())

	var attached, resumed []string
	watched := map[int64]string{} // job → node
	for _, n := range created.Nodes {
		switch {
		case n.JobID == 0:
		case n.Resumed:
			resumed = append(resumed, strconv.FormatInt(n.JobID, 10))
		case n.Attached:
			attached = append(attached, strconv.FormatInt(n.JobID, 10))
		}
		if n.JobID != 0 {
			watched[n.JobID] = n.Node
		}
	}
	prog := fleet.NewDisplay(io.Discard, "reinstall")
	if !o.noProgress {
		prog = fleet.NewDisplay(a.stderr, "reinstall")
	}
	prog.Start(len(created.Nodes))
	finished := func(r fleet.Result) { prog.Done(r.Node, r.Status, r.Reason) }
	q := url.Values{}
	if also := append(append([]string{}, resumed...), attached...); len(also) > 0 {
		q.Set("also", strings.Join(also, ","))
	}
	follow := ctx
	stopped := false
	done := map[int64]bool{}
	for _, n := range created.Nodes {
		if n.JobID == 0 {
			finished(fleet.Result{Node: n.Node, Rack: n.Rack, Op: "reinstall", Status: fleet.StatusSkipped,
				Reason: "nothing to resume: the node has no unfinished job"})
		}
	}
	// Give up when no controller of server.url answered for this long.
	const lostAfter = 2 * time.Minute
	lastContact := time.Now()
	for {
		err := c.followEvents(follow, run.ID, q, func() { lastContact = time.Now() }, func(j store.NodeJob) {
			if _, ok := watched[j.ID]; ok && !j.State.Active() && !done[j.ID] {
				done[j.ID] = true
				finished(progressRow(j))
			}
		})
		if err == nil {
			break
		}
		if ctx.Err() != nil && !stopped {
			// Ctrl-C: stop the run (as in-process), keep following until
			// its jobs are recorded.
			stopped = true
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if err := c.do(sctx, http.MethodPost, fmt.Sprintf("%s/runs/%d/cancel", api.Prefix, run.ID), nil, nil); err != nil {
				a.log.Warn("stop the run on the server", "run", run.ID, "err", err)
			}
			cancel()
			var fcancel context.CancelFunc
			follow, fcancel = context.WithTimeout(context.WithoutCancel(ctx), 3*time.Minute)
			defer fcancel()
			lastContact = time.Now()
			continue
		}
		var ae *apiError
		if errors.As(err, &ae) && ae.Status < 500 {
			prog.Close()
			return clientError(err)
		}
		if time.Since(lastContact) > lostAfter || follow.Err() != nil {
			prog.Close()
			return failedError(fmt.Errorf("lost the server while following run %d (it goes on: reprov jobs list --run %d): %w", run.ID, run.ID, err))
		}
		from := c.base()
		c.next()
		a.log.Warn("the server's event stream broke: reconnecting", "run", run.ID, "server", from, "to", c.base(), "err", err)
		select {
		case <-follow.Done():
		case <-time.After(time.Second):
		}
	}
	prog.Close()

	rq := url.Values{}
	if len(attached) > 0 {
		rq.Set("attached", strings.Join(attached, ","))
	}
	if len(resumed) > 0 {
		rq.Set("resumed", strings.Join(resumed, ","))
	}
	var rep struct {
		Run     store.Run     `json:"run"`
		Results []wireResult  `json:"results"`
		Summary agent.Summary `json:"summary"`
	}
	path := fmt.Sprintf("%s/runs/%d/report", api.Prefix, run.ID)
	if len(rq) > 0 {
		path += "?" + rq.Encode()
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := c.do(rctx, http.MethodGet, path, nil, &rep); err != nil {
		return clientError(err)
	}
	// One row per node, in the order the run was asked for.
	byNode := map[string]fleet.Result{}
	for _, r := range rep.Results {
		byNode[r.Node] = r.result()
	}
	results := make([]fleet.Result, 0, len(created.Nodes))
	for _, n := range created.Nodes {
		if r, ok := byNode[n.Node]; ok {
			results = append(results, r)
			continue
		}
		reason := "nothing to resume: the node has no unfinished job"
		results = append(results, fleet.Result{Node: n.Node, Rack: n.Rack, Op: "reinstall", Status: fleet.StatusSkipped, Reason: reason,
			Detail: &agent.NodeReport{Node: n.Node, Playbook: n.Playbook, Reason: reason}})
	}
	return reportReinstall(ctx, a, &agent.Report{Run: rep.Run, Results: results})
}

// wireResult is a fleet.Result as the API sends it.
type wireResult struct {
	Node       string            `json:"node"`
	Rack       string            `json:"rack"`
	Op         string            `json:"op"`
	Status     fleet.Status      `json:"status"`
	Reason     string            `json:"reason"`
	Error      string            `json:"error"`
	Detail     *agent.NodeReport `json:"detail"`
	DurationMS int64             `json:"duration_ms"`
}

func (w wireResult) result() fleet.Result {
	r := fleet.Result{Node: w.Node, Rack: w.Rack, Op: w.Op, Status: w.Status, Reason: w.Reason, Error: w.Error,
		Duration: time.Duration(w.DurationMS) * time.Millisecond}
	if w.Detail != nil {
		r.Detail = w.Detail
	}
	return r
}

// progressRow is the progress line of an ended job (the report has the
// full row).
func progressRow(j store.NodeJob) fleet.Result {
	r := fleet.Result{Node: j.Node, Rack: j.Rack, Op: "reinstall"}
	switch j.State {
	case store.JobLanded:
		r.Status = fleet.StatusOK
	case store.JobFailed:
		r.Status = fleet.StatusFailed
		r.Reason = j.Reason
		for _, c := range agent.Reasons() {
			if strings.HasPrefix(j.Reason, c) {
				r.Reason = c
			}
		}
	case store.JobInterrupted:
		r.Status, r.Reason = fleet.StatusInterrupted, agent.ReasonInterrupted
	default:
		r.Status, r.Reason = fleet.StatusSkipped, j.Reason
	}
	return r
}

// followEvents reads a run's event stream until its end event (nil), or
// until the stream or ctx breaks (the error). alive is called on every
// line the controller sends (events and keep-alives).
func (c *apiClient) followEvents(ctx context.Context, runID int64, q url.Values, alive func(), onJob func(store.NodeJob)) error {
	path := fmt.Sprintf("%s%s/runs/%d/events", c.base(), api.Prefix, runID)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		e := &apiError{Status: resp.StatusCode}
		var eb struct {
			Error api.Error `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil {
			e.Body = eb.Error
		}
		return e
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	event := ""
	for sc.Scan() {
		alive()
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data := strings.TrimPrefix(line, "data: ")
			switch event {
			case "job":
				var j store.NodeJob
				if json.Unmarshal([]byte(data), &j) == nil {
					onJob(j)
				}
			case "end":
				return nil
			}
		case line == "":
			event = ""
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// confirmRemote shows what a reinstall through the server would do and
// asks once on the terminal; without one it refuses (pass --yes).
func confirmRemote(a *app, c *apiClient, nodes []api.SubmittedNode, resume bool) error {
	racks := map[string]bool{}
	for _, n := range nodes {
		racks[n.Rack] = true
	}
	names := make([]string, 0, len(racks))
	for r := range racks {
		if r == "" {
			r = "(no rack)"
		}
		names = append(names, r)
	}
	sort.Strings(names)
	var b strings.Builder
	if resume {
		b.WriteString("Resuming the unfinished jobs among these nodes (nodes whose latest job ended are only reported):\n")
	}
	fmt.Fprintf(&b, "About to reinstall %d node(s) in %d rack(s): %s\n", len(nodes), len(racks), shortList(names, 10))
	fmt.Fprintf(&b, "  through the controller at %s (reprov plan shows each node's exact steps)\n", c.base())
	if !a.stdinIsTerminal() {
		return usagef("refusing to reinstall without confirmation: stdin is not a terminal (pass --yes)\n%s", b.String())
	}
	fmt.Fprint(a.stderr, b.String())
	fmt.Fprint(a.stderr, `Type "yes" to reinstall them: `)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return usagef("reading the confirmation: %w", err)
	}
	if ans := strings.ToLower(strings.TrimSpace(line)); ans != "yes" && ans != "y" {
		return usagef("not confirmed: nothing was done")
	}
	return nil
}

// jobsViaServer lists jobs through the API.
func jobsViaServer(ctx context.Context, c *apiClient, f store.JobFilter) ([]store.NodeJob, error) {
	q := url.Values{}
	if f.Node != "" {
		q.Set("node", f.Node)
	}
	if f.RunID != 0 {
		q.Set("run", strconv.FormatInt(f.RunID, 10))
	}
	for _, s := range f.States {
		q.Add("state", string(s))
	}
	q.Set("limit", strconv.Itoa(f.Limit))
	var jobs []store.NodeJob
	if err := c.do(ctx, http.MethodGet, api.Prefix+"/jobs?"+q.Encode(), nil, &jobs); err != nil {
		return nil, clientError(err)
	}
	return jobs, nil
}
