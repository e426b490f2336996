// Command writ-ledgergen writes a data directory whose ledger holds N
// realistic records, fast, for measuring sizes and throughput
// (docs/BENCHMARKS.md, "Ledger at scale").
//
// Records go through the broker's own append path (audit.Log.Append into
// boltstore: encoding, hash chain, Merkle tree hashes and indexes in the
// append's transaction); many appenders run at once so that bbolt's group
// commit puts hundreds of records in each transaction. The mix is what a
// busy broker writes: mostly grants, some denials, renewals and releases,
// access requests with reviews and approvals, revocations and break-glass
// uses, across a few hundred workloads, a few dozen people and fifty
// entitlements. Times advance by -step per record from -start.
//
// With -tx-records N it appends instead N records per bbolt transaction
// through the store's unit of work (Store.Commit, Tx.AppendEntry: the path
// a broker decision takes), from one appender, which makes millions
// of records a matter of minutes rather than hours (≈ 10,000 records/s at
// -tx-records 200000 on a 2-core VM, where the group-commit path made 1,400). The ledger is the same
// one a single -workers 1 appender writes for the same -seed.
//
// At the end it signs a checkpoint with the data directory's ledger key
// (created if absent, as writd does) and prints the file size, bytes per
// record and the space each bucket takes.
//
// Usage:
//
//	go run ./cmd/writ-ledgergen -records 1000000 -out DIR
//	go run ./cmd/writ-ledgergen -records 10000000 -tx-records 20000 -out DIR
//	go run ./cmd/writ-ledgergen -measure DIR   # open time, proofs, lookups
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/writ-dev/writ/broker"
	"github.com/writ-dev/writ/internal/audit"
	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/store/boltstore"
	"github.com/writ-dev/writ/internal/txn"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "writ-ledgergen:", err)
		os.Exit(1)
	}
}

type options struct {
	records   int
	out       string
	workers   int
	batch     time.Duration
	seed      uint64
	start     time.Time
	step      time.Duration
	noSign    bool
	noSummary bool
	profile   string
	pageSize  int
	origin    string
	txRecords int
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("writ-ledgergen", flag.ContinueOnError)
	fs.IntVar(&o.records, "records", 100000, "number of records to append")
	fs.StringVar(&o.out, "out", "", "data directory to create (must not hold a writ.db)")
	fs.IntVar(&o.workers, "workers", 1000, "concurrent appenders (records per group commit, at most)")
	fs.DurationVar(&o.batch, "batch-delay", 10*time.Millisecond, "how long a group commit waits for company")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the record mix")
	start := fs.String("start", "2030-01-01T00:00:00Z", "time of the first record (RFC 3339)")
	fs.DurationVar(&o.step, "step", 100*time.Millisecond, "time between records")
	fs.BoolVar(&o.noSign, "no-checkpoint", false, "do not sign a checkpoint at the end")
	fs.BoolVar(&o.noSummary, "no-summary", false, "do not print the per-bucket sizes")
	fs.IntVar(&o.pageSize, "page-size", 0, "bbolt page size of the new file (0: the store's default, 16384)")
	fs.StringVar(&o.origin, "origin", "writ-ledgergen/writ-ledger", "origin (key name) of a new ledger key; writd dev expects writ.dev/writ-ledger")
	fs.IntVar(&o.txRecords, "tx-records", 0, "append this many records per bbolt transaction through the store's unit of work (Store.Commit), one appender; 0: concurrent appenders and group commits")
	measureDir := fs.String("measure", "", "instead of generating, time opening, proofs and lookups on this existing data directory")
	fs.StringVar(&o.profile, "cpuprofile", "", "write a CPU profile of the appends to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *measureDir != "" {
		return measure(ctx, *measureDir, stdout)
	}
	if o.out == "" || o.records < 0 || o.workers < 1 || o.txRecords < 0 {
		return errors.New("-out DIR is required; -records, -workers and -tx-records must be positive")
	}
	var err error
	if o.start, err = time.Parse(time.RFC3339, *start); err != nil {
		return fmt.Errorf("-start: %w", err)
	}
	return generate(ctx, o, stdout)
}

func generate(ctx context.Context, o options, stdout io.Writer) error {
	if err := os.MkdirAll(o.out, 0o700); err != nil {
		return err
	}
	path := filepath.Join(o.out, "writ.db")
	if _, err := os.Stat(path); err == nil {
		return fmt.Errorf("%s exists; give a new directory", path)
	}
	store, err := boltstore.Open(path, boltstore.Options{BatchDelay: o.batch, PageSize: o.pageSize})
	if err != nil {
		return err
	}
	defer store.Close()
	var tick atomic.Int64
	log, err := audit.New(audit.Config{Store: store, Now: func() time.Time {
		return o.start.Add(time.Duration(tick.Add(1)) * o.step)
	}})
	if err != nil {
		return err
	}

	if o.profile != "" {
		f, err := os.Create(o.profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	began := time.Now()
	if o.txRecords > 0 {
		if err := appendInTransactions(ctx, store, o, began); err != nil {
			return err
		}
	} else if err := appendConcurrently(ctx, log, o, began); err != nil {
		return err
	}
	took := time.Since(began)
	fmt.Fprintf(stdout, "appended %d records in %s (%.0f records/s)\n", o.records, took.Round(time.Millisecond), float64(o.records)/took.Seconds())

	if !o.noSign && o.records > 0 {
		signer, vkey, err := checkpoint.LoadOrCreateKey(filepath.Join(o.out, checkpoint.KeyFile), "", o.origin)
		if err != nil {
			return err
		}
		cp, err := checkpoint.New(ctx, checkpoint.Config{Store: store, Signer: signer})
		if err != nil {
			return err
		}
		if _, err := cp.SignNow(ctx); err != nil {
			return err
		}
		if err := cp.Close(ctx); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(o.out, "ledger.pub"), []byte(vkey+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "signed a checkpoint at size %d; verifier key in %s\n", o.records, filepath.Join(o.out, "ledger.pub"))
	}
	if err := store.Close(); err != nil {
		return err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d bytes, %.0f bytes per record\n", path, fi.Size(), float64(fi.Size())/float64(max(o.records, 1)))
	if o.noSummary {
		return nil
	}
	return printBuckets(stdout, path, o.records)
}

// appendConcurrently appends o.records records through audit.Log.Append from
// o.workers appenders, so that bbolt's group commit batches them.
func appendConcurrently(ctx context.Context, log *audit.Log, o options, began time.Time) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, o.workers)
	for w := range o.workers {
		wg.Go(func() {
			mix := newMix(o.seed, uint64(w))
			for next.Add(1) <= int64(o.records) {
				if ctx.Err() != nil {
					return
				}
				if _, err := log.Append(ctx, mix.event()); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := min(next.Load(), int64(o.records))
				fmt.Fprintf(os.Stderr, "%d records, %.0f/s\n", n, float64(n)/time.Since(began).Seconds())
			}
		}
	}()
	wg.Wait()
	close(done)
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

// appendInTransactions appends o.records records, o.txRecords per bbolt
// transaction, through the store's unit of work (Store.Commit and
// Tx.AppendEntry, the path a broker decision takes: appendInTx writes the
// record, its Merkle tree hashes and its indexes). Builds come from
// audit.Prepare, as audit.Log.Append makes them; times advance by o.step.
func appendInTransactions(ctx context.Context, store *boltstore.Store, o options, began time.Time) error {
	mix := newMix(o.seed, 0)
	done, last := 0, time.Now()
	for done < o.records {
		n := min(o.txRecords, o.records-done)
		builds := make([]audit.Build, n)
		for i := range builds {
			now := o.start.Add(time.Duration(done+i+1) * o.step)
			b, err := audit.Prepare(mix.event(), now)
			if err != nil {
				return err
			}
			builds[i] = b
		}
		err := store.Commit(ctx, func(tx txn.Tx) error {
			for _, b := range builds {
				if _, err := tx.AppendEntry(b); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		done += n
		if time.Since(last) >= 5*time.Second {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "%d records, %.0f/s\n", done, float64(done)/time.Since(began).Seconds())
		}
	}
	return nil
}

// mix draws realistic events.
type mix struct {
	r        *rand.Rand
	live     []string // recent grant IDs with their credential refs
	refs     map[string]string
	requests []string
}

func newMix(seed, stream uint64) *mix {
	return &mix{r: rand.New(rand.NewPCG(seed, stream)), refs: map[string]string{}}
}

var teams = []string{"orders", "payments", "search", "billing", "identity", "catalog", "shipping", "fraud", "ledger", "reports"}

func (m *mix) workload() string {
	n := m.r.IntN(200)
	return fmt.Sprintf("spiffe://prod.example.org/ns/%s/sa/svc-%03d", teams[n%len(teams)], n)
}

func (m *mix) person() string {
	return fmt.Sprintf("oidc:https://login.example.org#user-%02d", m.r.IntN(30))
}

func (m *mix) entitlement() string {
	n := m.r.IntN(50)
	return fmt.Sprintf("%s-db-%s", teams[n%len(teams)], []string{"read", "write", "admin", "migrate", "report"}[n/10])
}

func (m *mix) id(prefix string) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz234567"
	b := []byte(prefix)
	for range 26 {
		b = append(b, alphabet[m.r.IntN(32)])
	}
	return string(b)
}

func (m *mix) event() audit.Event {
	w, e := m.workload(), m.entitlement()
	ttl := time.Duration(5+m.r.IntN(55)) * time.Minute
	exp := time.Date(2030, 6, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(m.r.IntN(1e6)) * time.Second)
	switch p := m.r.IntN(100); {
	case p < 72: // an automatic grant
		g := m.id("g_")
		ref := m.id("")
		m.remember(g, ref)
		return audit.Event{Action: broker.ActionGrant, Actor: w, Subject: w, Entitlement: e, Rule: "auto-" + e, Outcome: "granted",
			Reason: "eligible", GrantID: g, TTL: ttl, CredentialKind: "jwt", CredentialRef: ref, Expires: exp}
	case p < 80:
		return audit.Event{Action: broker.ActionDeny, Actor: w, Subject: w, Entitlement: e, Outcome: "not_eligible",
			Reason: "no requester rule matches " + w}
	case p < 86 && len(m.live) > 0: // renew or release
		g := m.live[m.r.IntN(len(m.live))]
		action, outcome := broker.ActionRenew, "renewed"
		if m.r.IntN(3) == 0 {
			action, outcome = broker.ActionRelease, "released"
		}
		return audit.Event{Action: action, Actor: w, Subject: w, Entitlement: e, Outcome: outcome, GrantID: g,
			TTL: ttl, CredentialKind: "jwt", CredentialRef: m.refs[g], Expires: exp}
	case p < 89: // a request
		r := m.id("r_")
		m.requests = append(m.requests, r)
		if len(m.requests) > 64 {
			m.requests = m.requests[1:]
		}
		return audit.Event{Action: broker.ActionRequest, Actor: m.person(), Subject: w, Entitlement: e, Rule: "approvers-" + e,
			Outcome: "pending", Reason: "deploy CHG-" + fmt.Sprint(10000+m.r.IntN(90000)), TTL: time.Hour,
			Details: map[string]string{"request_id": r, "ticket": "CHG-" + fmt.Sprint(10000+m.r.IntN(90000))}}
	case p < 95 && len(m.requests) > 0: // a review or an approval
		r := m.requests[m.r.IntN(len(m.requests))]
		action, outcome := broker.ActionReview, "approve"
		details := map[string]string{"request_id": r, "decision": "approve", "stage": "0", "groups": "[dba]"}
		if m.r.IntN(2) == 0 {
			action, outcome = broker.ActionApprove, "approved"
			details = map[string]string{"request_id": r, "approved_at": exp.Format(time.RFC3339Nano), "window_end": exp.Add(time.Hour).Format(time.RFC3339Nano)}
		}
		return audit.Event{Action: action, Actor: m.person(), Subject: w, Entitlement: e, Rule: "approvers-" + e, Outcome: outcome,
			Reason: "ok", TTL: time.Hour, Details: details}
	case p < 98 && len(m.live) > 0:
		g := m.live[m.r.IntN(len(m.live))]
		return audit.Event{Action: broker.ActionCredentialRevoked, Actor: m.person(), Subject: w, Entitlement: e, Outcome: "revoked",
			GrantID: g, CredentialKind: "jwt", CredentialRef: m.refs[g], Expires: exp, Details: map[string]string{"request_id": m.id("r_")}}
	default:
		g, bg, ref := m.id("g_"), m.id("bg_"), m.id("")
		m.remember(g, ref)
		return audit.Event{Action: broker.ActionBreakGlass, Actor: m.person(), Subject: w, Entitlement: e, Rule: "break-glass",
			Outcome: "granted", Reason: "incident INC-" + fmt.Sprint(1000+m.r.IntN(9000)), GrantID: g, TTL: 5 * time.Minute,
			CredentialKind: "jwt", CredentialRef: ref, Expires: exp,
			Details: map[string]string{"break_glass": "true", "break_glass_id": bg, "incident": "INC-1234", "review_due": exp.Format(time.RFC3339)}}
	}
}

func (m *mix) remember(g, ref string) {
	m.live = append(m.live, g)
	m.refs[g] = ref
	if len(m.live) > 256 {
		delete(m.refs, m.live[0])
		m.live = m.live[1:]
	}
}
