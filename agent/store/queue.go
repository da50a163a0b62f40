package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/riverdriver/riversqlite"
	"github.com/riverqueue/river/rivertype"
)

// ReinstallKind is the River job kind of a node reinstall.
const ReinstallKind = "reprov.reinstall"

// ReinstallArgs are the River job arguments of one node job's generation.
// The engine registers its worker for them:
//
//	workers := river.NewWorkers()
//	river.AddWorker(workers, myReinstallWorker) // a river.Worker[store.ReinstallArgs]
//	q, err := st.NewQueue(store.QueueConfig{Workers: workers})
//
// The worker calls ClaimNodeJob(NodeJobID, Generation, OwnerID(q.ID(),
// job.ID), ttl) first and does nothing when that says ErrSuperseded,
// ErrNotActive or ErrWindowClosed.
type ReinstallArgs struct {
	NodeJobID  int64  `json:"node_job_id" river:"unique"`
	Generation int64  `json:"generation" river:"unique"`
	Node       string `json:"node" river:"unique"`
	RunID      int64  `json:"run_id"`
}

// Kind is River's job kind.
func (ReinstallArgs) Kind() string { return ReinstallKind }

// InsertOpts are the defaults of every reinstall job: unique per node, node
// job and generation while not finalised, and few attempts (a retry resumes
// from the step record).
func (ReinstallArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{MaxAttempts: 3, UniqueOpts: ReinstallUniqueOpts()}
}

// ReinstallUniqueOpts is the uniqueness of reinstall jobs: by the args
// tagged unique (node, node job, generation), among jobs not yet finalised.
// River's default ByState also counts completed jobs, which would refuse a
// second reinstall of a node for 24 h.
func ReinstallUniqueOpts() river.UniqueOpts {
	return river.UniqueOpts{
		ByArgs: true,
		ByState: []rivertype.JobState{
			rivertype.JobStateAvailable,
			rivertype.JobStatePending,
			rivertype.JobStateRunning,
			rivertype.JobStateRetryable,
			rivertype.JobStateScheduled,
		},
	}
}

// RiverClient is the part of *river.Client the engine uses, identical for
// both drivers (River's client is generic over the driver's transaction
// type: *sql.Tx for SQLite, pgx.Tx for PostgreSQL; Queue hides that).
type RiverClient interface {
	ID() string
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	StopAndCancel(ctx context.Context) error
	Stopped() <-chan struct{}
	Insert(ctx context.Context, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	JobGet(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobCancel(ctx context.Context, id int64) (*rivertype.JobRow, error)
	JobList(ctx context.Context, params *river.JobListParams) (*river.JobListResult, error)
	Subscribe(kinds ...river.EventKind) (<-chan *river.Event, func())
}

// QueueConfig configures a Queue.
type QueueConfig struct {
	// ID names this controller's River client; it is also the prefix of the
	// owner of the jobs it works (OwnerID). Empty: River's default (host
	// name and start time).
	ID string
	// Workers holds the engine's workers (river.AddWorker). Nil makes an
	// insert-only queue (it enqueues but never works jobs).
	Workers *river.Workers
	// Queues maps queue names (e.g. one per site or BMC network) to their
	// maximum concurrent jobs. Default with Workers: {"default": 32}.
	Queues map[string]int
	// JobTimeout bounds one attempt of a job. Default -1 (none): the engine
	// times each step itself; reinstalls take minutes.
	JobTimeout time.Duration
	// RescueStuckJobsAfter is when River's leader rescues a job whose client
	// died (≥ JobTimeout; default River's, 1 h). reprov resumes sooner from
	// its own record: OrphanedJobs and Resume.
	RescueStuckJobsAfter time.Duration
	// FetchPollInterval is how often the client looks for new jobs (0:
	// River's default, 1 s). Without PostgreSQL's LISTEN/NOTIFY, jobs
	// enqueued by another process are seen at this interval.
	FetchPollInterval time.Duration
	// PeriodicJobs run on the elected leader (reimaging windows, later).
	PeriodicJobs []*river.PeriodicJob
}

// Queue is the store's River client: it enqueues reinstall jobs atomically
// with reprov's own records and, with workers, works them. The embedded
// RiverClient gives River's own API (Start, Stop, Subscribe, JobList…).
type Queue struct {
	RiverClient
	store    *Store
	insertTx func(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error)
	// retryTx makes a River job available now, in tx (River's JobRetryTx).
	retryTx func(ctx context.Context, tx any, id int64) error
}

// NewQueue makes a River client on the store's database. Start it to work
// jobs; Stop it before closing the store.
func (s *Store) NewQueue(cfg QueueConfig) (*Queue, error) {
	rc := &river.Config{
		ID:                   cfg.ID,
		Logger:               s.log,
		Workers:              cfg.Workers,
		JobTimeout:           cfg.JobTimeout,
		RescueStuckJobsAfter: cfg.RescueStuckJobsAfter,
		FetchPollInterval:    cfg.FetchPollInterval,
		PeriodicJobs:         cfg.PeriodicJobs,
	}
	if rc.JobTimeout == 0 {
		rc.JobTimeout = -1
	}
	if cfg.FetchPollInterval > 0 && cfg.FetchPollInterval < river.FetchCooldownDefault {
		rc.FetchCooldown = cfg.FetchPollInterval
	}
	if cfg.Workers != nil {
		queues := cfg.Queues
		if len(queues) == 0 {
			queues = map[string]int{river.QueueDefault: 32}
		}
		rc.Queues = make(map[string]river.QueueConfig, len(queues))
		for name, n := range queues {
			rc.Queues[name] = river.QueueConfig{MaxWorkers: n}
		}
	} else if len(cfg.Queues) > 0 || len(cfg.PeriodicJobs) > 0 {
		return nil, errors.New("new queue: queues and periodic jobs need workers")
	}
	var (
		q   *Queue
		err error
	)
	if s.dialect == SQLite {
		q, err = newQueue[*sql.Tx](s, riversqlite.New(s.db), rc)
	} else {
		q, err = newQueue[pgx.Tx](s, riverpgxv5.New(s.pool), rc)
	}
	if err != nil {
		return nil, fmt.Errorf("new queue on %s: %w", s.target, err)
	}
	return q, nil
}

func newQueue[TTx any](s *Store, driver riverdriver.Driver[TTx], cfg *river.Config) (*Queue, error) {
	c, err := river.NewClient(driver, cfg)
	if err != nil {
		return nil, err
	}
	return &Queue{
		RiverClient: c,
		store:       s,
		insertTx: func(ctx context.Context, tx any, args river.JobArgs, opts *river.InsertOpts) (*rivertype.JobInsertResult, error) {
			t, ok := tx.(TTx)
			if !ok {
				return nil, fmt.Errorf("internal: transaction is %T, River wants %T", tx, t)
			}
			return c.InsertTx(ctx, t, args, opts)
		},
		retryTx: func(ctx context.Context, tx any, id int64) error {
			t, ok := tx.(TTx)
			if !ok {
				return fmt.Errorf("internal: transaction is %T, River wants %T", tx, t)
			}
			_, err := c.JobRetryTx(ctx, t, id)
			return err
		},
	}, nil
}

// EnqueueOpts tune the River job of a node job.
type EnqueueOpts struct {
	Queue       string    // "": River's default queue
	ScheduledAt time.Time // zero: the run's window start, or now
	MaxAttempts int       // 0: ReinstallArgs' default
	Priority    int       // 0: River's default
}

func (q *Queue) insertForJob(ctx context.Context, tx querier, raw any, job NodeJob, opts EnqueueOpts) (NodeJob, error) {
	scheduled := opts.ScheduledAt
	if scheduled.IsZero() {
		var start sql.NullInt64
		if err := tx.queryRow(ctx, `SELECT window_start FROM reprov_run WHERE id = ?`, job.RunID).Scan(&start); err != nil {
			return NodeJob{}, fmt.Errorf("run %d: %w", job.RunID, err)
		}
		scheduled = fromMicros(start)
	}
	ins := ReinstallArgs{}.InsertOpts()
	ins.Queue = opts.Queue
	ins.ScheduledAt = scheduled
	ins.Priority = opts.Priority
	if opts.MaxAttempts > 0 {
		ins.MaxAttempts = opts.MaxAttempts
	}
	args := ReinstallArgs{NodeJobID: job.ID, Generation: job.Generation, Node: job.Node, RunID: job.RunID}
	res, err := q.insertTx(ctx, raw, args, &ins)
	if err != nil {
		return NodeJob{}, fmt.Errorf("enqueue River job: %w", err)
	}
	if _, err := tx.exec(ctx, `UPDATE reprov_node_job SET river_job_id = ?, updated_at = ? WHERE id = ?`,
		res.Job.ID, nowMicros(), job.ID); err != nil {
		return NodeJob{}, err
	}
	return q.store.nodeJob(ctx, tx, job.ID)
}

// Acquire is AcquireNode and the River job that will work it, in one
// transaction: either the node is held and its job enqueued, or neither.
// The River job is scheduled at opts.ScheduledAt, else the run's window
// start, else now.
func (q *Queue) Acquire(ctx context.Context, req AcquireRequest, opts EnqueueOpts) (NodeJob, error) {
	var job NodeJob
	err := q.store.inTx(ctx, func(tx querier, raw any) error {
		j, err := q.store.acquireTx(ctx, tx, req)
		if err != nil {
			return err
		}
		job, err = q.insertForJob(ctx, tx, raw, j, opts)
		if err != nil {
			return fmt.Errorf("acquire node %s: %w", req.Node, err)
		}
		return nil
	})
	return job, err
}

// Resume makes a stopped job work again under a new generation with a new
// River job (the worker then continues after the job's last completed step,
// settling unsettled intents first). It applies to a running job whose
// lease expired (its controller died: see OrphanedJobs), a queued job (its
// River job was lost), and an interrupted job when its node has no other
// active job. A job held under a live lease fails with ErrNodeBusy; other
// finished jobs with ErrNotActive. The old generation's River job, if River
// ever runs it, gets ErrSuperseded from ClaimNodeJob.
func (q *Queue) Resume(ctx context.Context, jobID int64, opts EnqueueOpts) (NodeJob, error) {
	var job NodeJob
	err := q.store.inTx(ctx, func(tx querier, raw any) error {
		j, err := q.store.nodeJob(ctx, tx, jobID)
		if err != nil {
			return err
		}
		now := time.Now()
		var n int64
		switch {
		case j.State == JobRunning && j.LeaseUntil.After(now):
			return busyError(j, "its controller's lease is live")
		case j.State == JobRunning, j.State == JobQueued, j.State == JobInterrupted:
			if j.State == JobInterrupted {
				holder, err := scanJob(tx.queryRow(ctx, `SELECT `+jobCols("")+` FROM reprov_node_job WHERE node = ? AND state IN `+activeStates, j.Node))
				if err == nil {
					return busyError(holder, "")
				}
				if !errors.Is(err, sql.ErrNoRows) {
					return err
				}
			}
			n, err = tx.exec(ctx, `UPDATE reprov_node_job
				SET state = 'queued', owner = '', lease_until = NULL, generation = generation + 1,
				    reason = '', finished_at = NULL, updated_at = ?
				WHERE id = ? AND generation = ? AND state = ?
				  AND (state <> 'running' OR lease_until IS NULL OR lease_until < ?)`,
				now.UnixMicro(), jobID, j.Generation, string(j.State), now.UnixMicro())
			if isUniqueViolation(err) {
				return &NodeBusyError{Node: j.Node, JobID: j.ID, RunID: j.RunID, State: j.State, Reason: "another job became active"}
			}
			if err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("job %d (node %s) changed while resuming; try again", jobID, j.Node)
			}
		default:
			return fmt.Errorf("job %d (node %s) is %s: %w", jobID, j.Node, j.State, ErrNotActive)
		}
		j, err = q.store.nodeJob(ctx, tx, jobID)
		if err != nil {
			return err
		}
		job, err = q.insertForJob(ctx, tx, raw, j, opts)
		return err
	})
	if err != nil {
		return NodeJob{}, fmt.Errorf("resume job %d: %w", jobID, err)
	}
	return job, nil
}
