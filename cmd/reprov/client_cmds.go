package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/reprov/reprov/agent"
	"github.com/reprov/reprov/agent/api"
	"github.com/reprov/reprov/agent/store"
	"github.com/reprov/reprov/inventory"
)

// The CLI as a client of serve's API for plan, jobs show|cancel, restore,
// audit and quirks (reinstall and jobs list are in client.go), and the
// serve side of the routes that need the controller's engine.

// notFoundFails maps an API error as clientError does, except that a 404
// is a failure (exit 1), as the in-process command's "not found" is.
func notFoundFails(err error) error {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
		return failedError(err)
	}
	return clientError(err)
}

func apiSelection(s selection) api.Selection {
	return api.Selection{Names: s.Names, Racks: s.Racks, Selector: s.Selector, All: s.All}
}

// planViaServer plans through GET /api/v1/plan.
func planViaServer(ctx context.Context, c *apiClient, o planOptions) ([]*agent.NodePlan, error) {
	q := api.SelectionQuery(apiSelection(o.Selection))
	if o.Offline {
		q.Set("offline", "true")
	}
	if o.dryRunOf == "reinstall" {
		q.Set("for_reinstall", "true")
	}
	var plans []*agent.NodePlan
	if err := c.do(ctx, http.MethodGet, api.Prefix+"/plan?"+q.Encode(), nil, &plans); err != nil {
		return nil, clientError(err)
	}
	return plans, nil
}

// jobShowViaServer is `jobs show` through the API: the node's latest job
// (or --job), then its detail.
func jobShowViaServer(ctx context.Context, c *apiClient, o jobsShowOptions) (jobDetail, error) {
	id := o.Job
	if id == 0 {
		jobs, err := jobsViaServer(ctx, c, store.JobFilter{Node: o.Node, Limit: 1})
		if err != nil {
			return jobDetail{}, err
		}
		if len(jobs) == 0 {
			return jobDetail{}, failedError(fmt.Errorf("node %s has no job: %w", o.Node, store.ErrNotFound))
		}
		id = jobs[0].ID
	}
	var d jobDetail
	if err := c.do(ctx, http.MethodGet, fmt.Sprintf("%s/jobs/%d", api.Prefix, id), nil, &d); err != nil {
		return jobDetail{}, notFoundFails(err)
	}
	if d.Job.Node != o.Node {
		return jobDetail{}, usagef("job %d is node %s's, not %s's", id, d.Job.Node, o.Node)
	}
	return d, nil
}

// jobCancelViaServer cancels a node's active job through the API.
func jobCancelViaServer(ctx context.Context, c *apiClient, node, reason string) (store.NodeJob, error) {
	var job store.NodeJob
	body := map[string]string{"reason": reason}
	if err := c.do(ctx, http.MethodPost, api.Prefix+"/nodes/"+url.PathEscape(node)+"/cancel", body, &job); err != nil {
		return store.NodeJob{}, notFoundFails(err)
	}
	return job, nil
}

// restoreViaServer has the controller put a node's saved boot sector
// back: it holds the saved copies (its state dir) and the SSH access.
func restoreViaServer(ctx context.Context, a *app, c *apiClient, o restoreOptions) (restoreDetail, error) {
	if o.File != "" {
		return restoreDetail{}, usagef("restore: --file names a file on this machine, not the controller's: pass --run to pick the controller's saved copy, or --local")
	}
	if !o.Yes {
		which := "the newest boot sector saved"
		if o.Run != 0 {
			which = fmt.Sprintf("the boot sector saved by run %d", o.Run)
		}
		if err := a.confirm(confirmation{Verb: "write back the boot sector of", Nodes: []inventory.Node{{Name: o.Node}},
			Detail: fmt.Sprintf("  %s, over SSH, by the controller at %s\n", which, c.base())}); err != nil {
			return restoreDetail{}, err
		}
	}
	var d restoreDetail
	req := api.RestoreRequest{Run: o.Run, Force: o.Force}
	if err := c.do(ctx, http.MethodPost, api.Prefix+"/nodes/"+url.PathEscape(o.Node)+"/restore", req, &d); err != nil {
		return restoreDetail{}, clientError(err)
	}
	return d, nil
}

// auditViaServer reads the audit trail through GET /api/v1/audit.
func auditViaServer(ctx context.Context, c *apiClient, o auditOptions) ([]store.AuditRecord, error) {
	q := url.Values{}
	if o.selects() {
		q = api.SelectionQuery(apiSelection(o.Selection))
	}
	if o.Run != "" {
		q.Set("run", o.Run)
	}
	if o.Job != 0 {
		q.Set("job", strconv.FormatInt(o.Job, 10))
	}
	q.Set("limit", strconv.Itoa(o.Limit))
	var recs []store.AuditRecord
	if err := c.do(ctx, http.MethodGet, api.Prefix+"/audit?"+q.Encode(), nil, &recs); err != nil {
		return nil, clientError(err)
	}
	return recs, nil
}

// quirksViaServer lists the learned quirks o selects through the API.
func quirksViaServer(ctx context.Context, c *apiClient, o quirksOptions) ([]store.Quirk, error) {
	if err := checkGlobs(o.Nodes); err != nil {
		return nil, err
	}
	q := url.Values{}
	if o.Model != "" {
		q.Set("model", o.Model)
	}
	if o.Quirk != "" {
		q.Set("quirk", o.Quirk)
	}
	var all []store.Quirk
	if err := c.do(ctx, http.MethodGet, api.Prefix+"/quirks?"+q.Encode(), nil, &all); err != nil {
		return nil, clientError(err)
	}
	return matchQuirks(all, o.Nodes), nil
}

// clearQuirksViaServer forgets the quirks o selects through the API and
// returns those it forgot.
func clearQuirksViaServer(ctx context.Context, c *apiClient, o quirksOptions) ([]store.Quirk, error) {
	qs, err := quirksViaServer(ctx, c, o)
	if err != nil {
		return nil, err
	}
	var gone []store.Quirk
	for _, q := range qs {
		err := c.do(ctx, http.MethodDelete, api.Prefix+"/quirks/"+url.PathEscape(q.Node)+"/"+url.PathEscape(q.Quirk), nil, nil)
		var ae *apiError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusNotFound:
			// Forgotten meanwhile.
		case err != nil:
			return gone, clientError(err)
		default:
			gone = append(gone, q)
		}
	}
	return gone, nil
}

// apiCommands are the parts of serve's API that need the controller's
// engine: plan, restore and the audit trail.
func (env *engineEnv) apiCommands(cfg *api.Config) {
	cfg.Plan = func(ctx context.Context, nodes []inventory.Node, req api.PlanRequest) ([]*agent.NodePlan, error) {
		return env.plan(ctx, nodes, req.Offline, req.ForReinstall), nil
	}
	cfg.Restore = func(ctx context.Context, node inventory.Node, req api.RestoreRequest) (api.RestoreResult, error) {
		file, err := env.restoreFile(ctx, node, restoreOptions{Node: node.Name, Run: req.Run, Force: req.Force})
		if err != nil {
			return api.RestoreResult{}, refusal(err)
		}
		return env.restore(ctx, node, file, req.Force)
	}
	cfg.Audit = storeAudit{env.st}
}

// refusal makes a usage error (exit 2 in-process) an API refusal (422).
func refusal(err error) error {
	var ee *exitError
	if errors.As(err, &ee) && ee.code == exitUsage {
		return &api.Refusal{Err: err}
	}
	return err
}

// storeAudit serves the API's audit route from the job store.
type storeAudit struct{ st *store.Store }

// AuditEntries implements api.AuditSource.
func (s storeAudit) AuditEntries(ctx context.Context, q api.AuditQuery) (any, error) {
	recs, err := s.st.Audit(ctx, store.AuditFilter{Nodes: q.Nodes, Run: q.Run, JobID: q.JobID, Limit: q.Limit})
	if err != nil {
		return nil, err
	}
	out := make([]store.AuditRecord, 0, len(recs))
	for _, r := range recs {
		if q.Since.IsZero() || !r.At.Before(q.Since) {
			out = append(out, r)
		}
	}
	return out, nil
}
