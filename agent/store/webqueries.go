package store

import (
	"context"
	"fmt"
	"strings"
)

// Read-only aggregate queries for the status page, `reprov status` and the
// Prometheus collectors (agent/web, agent/metrics). They read what the
// engine wrote and change nothing.

// LatestJobs returns every node's latest job (the highest ID per node), by
// node name, without the evidence column (the page and the metrics do not
// need it, and at 10,000 nodes it is most of the bytes).
func (s *Store) LatestJobs(ctx context.Context) ([]NodeJob, error) {
	cols := strings.Replace(jobCols(""), "evidence", "NULL", 1)
	jobs, err := s.listJobs(ctx, `SELECT `+cols+` FROM reprov_node_job
		WHERE id IN (SELECT MAX(id) FROM reprov_node_job GROUP BY node) ORDER BY node`)
	if err != nil {
		return nil, fmt.Errorf("latest jobs: %w", err)
	}
	return jobs, nil
}

// JobCount is the number of node jobs sharing a state, path, landing
// source and site.
type JobCount struct {
	State         JobState
	Path          string
	LandingSource LandingSource
	Site          string
	Count         int64
}

// JobCounts counts every node job in the store by state, path, landing
// source and site.
func (s *Store) JobCounts(ctx context.Context) ([]JobCount, error) {
	rs, err := s.q().query(ctx, `SELECT state, path, landing_source, site, COUNT(*) FROM reprov_node_job
		GROUP BY state, path, landing_source, site ORDER BY state, path, landing_source, site`)
	if err != nil {
		return nil, fmt.Errorf("job counts: %w", err)
	}
	defer rs.Close()
	var out []JobCount
	for rs.Next() {
		var (
			c             JobCount
			state, source string
		)
		if err := rs.Scan(&state, &c.Path, &source, &c.Site, &c.Count); err != nil {
			return nil, fmt.Errorf("job counts: %w", err)
		}
		c.State, c.LandingSource = JobState(state), LandingSource(source)
		out = append(out, c)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("job counts: %w", err)
	}
	return out, nil
}

// ReasonCount is the number of jobs in one end state with the same reason.
type ReasonCount struct {
	State  JobState
	Reason string
	Count  int64
}

// EndReasons counts the ended jobs in the given states (failed, cancelled,
// interrupted) by their full reason; callers fold the reasons into their
// categories.
func (s *Store) EndReasons(ctx context.Context, states ...JobState) ([]ReasonCount, error) {
	if len(states) == 0 {
		return nil, nil
	}
	args := make([]any, len(states))
	for i, st := range states {
		args[i] = string(st)
	}
	rs, err := s.q().query(ctx, `SELECT state, reason, COUNT(*) FROM reprov_node_job
		WHERE state IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(states)), ", ")+`)
		GROUP BY state, reason ORDER BY state, reason`, args...)
	if err != nil {
		return nil, fmt.Errorf("end reasons: %w", err)
	}
	defer rs.Close()
	var out []ReasonCount
	for rs.Next() {
		var (
			c     ReasonCount
			state string
		)
		if err := rs.Scan(&state, &c.Reason, &c.Count); err != nil {
			return nil, fmt.Errorf("end reasons: %w", err)
		}
		c.State = JobState(state)
		out = append(out, c)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("end reasons: %w", err)
	}
	return out, nil
}

// LandingCount is the number of landings one source recorded on jobs of
// one path.
type LandingCount struct {
	Path   string
	Source LandingSource
	Count  int64
}

// LandingCounts counts every recorded landing (one per job and source) by
// the job's path and the source.
func (s *Store) LandingCounts(ctx context.Context) ([]LandingCount, error) {
	rs, err := s.q().query(ctx, `SELECT j.path, l.source, COUNT(*) FROM reprov_landing l
		JOIN reprov_node_job j ON j.id = l.job_id GROUP BY j.path, l.source ORDER BY j.path, l.source`)
	if err != nil {
		return nil, fmt.Errorf("landing counts: %w", err)
	}
	defer rs.Close()
	var out []LandingCount
	for rs.Next() {
		var (
			c      LandingCount
			source string
		)
		if err := rs.Scan(&c.Path, &source, &c.Count); err != nil {
			return nil, fmt.Errorf("landing counts: %w", err)
		}
		c.Source = LandingSource(source)
		out = append(out, c)
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("landing counts: %w", err)
	}
	return out, nil
}

// RunCounts counts the runs by state.
func (s *Store) RunCounts(ctx context.Context) (map[RunState]int64, error) {
	rs, err := s.q().query(ctx, `SELECT state, COUNT(*) FROM reprov_run GROUP BY state`)
	if err != nil {
		return nil, fmt.Errorf("run counts: %w", err)
	}
	defer rs.Close()
	out := make(map[RunState]int64)
	for rs.Next() {
		var (
			state string
			n     int64
		)
		if err := rs.Scan(&state, &n); err != nil {
			return nil, fmt.Errorf("run counts: %w", err)
		}
		out[RunState(state)] = n
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("run counts: %w", err)
	}
	return out, nil
}

// RunJobCounts counts the jobs of the given runs by run and state.
func (s *Store) RunJobCounts(ctx context.Context, runIDs []int64) (map[int64]map[JobState]int64, error) {
	out := make(map[int64]map[JobState]int64, len(runIDs))
	if len(runIDs) == 0 {
		return out, nil
	}
	args := make([]any, len(runIDs))
	for i, id := range runIDs {
		args[i] = id
	}
	rs, err := s.q().query(ctx, `SELECT run_id, state, COUNT(*) FROM reprov_node_job
		WHERE run_id IN (`+strings.TrimSuffix(strings.Repeat("?, ", len(runIDs)), ", ")+`)
		GROUP BY run_id, state`, args...)
	if err != nil {
		return nil, fmt.Errorf("run job counts: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		var (
			id    int64
			state string
			n     int64
		)
		if err := rs.Scan(&id, &state, &n); err != nil {
			return nil, fmt.Errorf("run job counts: %w", err)
		}
		if out[id] == nil {
			out[id] = make(map[JobState]int64)
		}
		out[id][JobState(state)] = n
	}
	if err := rs.Err(); err != nil {
		return nil, fmt.Errorf("run job counts: %w", err)
	}
	return out, nil
}

// ResumeCounts reports how often jobs were put back on a queue: resumes is
// the sum of every job's generation (each takeover, handover and
// --resume adds one), handovers the number of handed_over records (a
// stopping controller handing its nodes back). resumes − handovers is the
// takeovers and explicit resumes.
func (s *Store) ResumeCounts(ctx context.Context) (resumes, handovers int64, err error) {
	err = s.q().queryRow(ctx, `SELECT CAST(COALESCE(SUM(generation), 0) AS BIGINT) FROM reprov_node_job`).Scan(&resumes)
	if err != nil {
		return 0, 0, fmt.Errorf("resume counts: %w", err)
	}
	err = s.q().queryRow(ctx, `SELECT COUNT(*) FROM reprov_step WHERE step = 'handed_over' AND phase = 'intent'`).Scan(&handovers)
	if err != nil {
		return 0, 0, fmt.Errorf("resume counts: %w", err)
	}
	return resumes, handovers, nil
}
