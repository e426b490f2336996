package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/writ-dev/writ/internal/checkpoint"
	"github.com/writ-dev/writ/internal/daemon"
	brokerv1 "github.com/writ-dev/writ/proto/writ/broker/v1"
)

// Checkpoint intervals of the two checkpoints scenarios.
var (
	// checkpointsDefault is the daemon's default: every 1000 records or
	// one minute.
	checkpointsDefault = daemon.LedgerCheckpointConfig{EveryRecords: checkpoint.DefaultEveryRecords, Every: checkpoint.DefaultEvery}
	// checkpointsFast signs ten times as often by count and sixty times
	// as often by time, so that the cost is visible.
	checkpointsFast = daemon.LedgerCheckpointConfig{EveryRecords: 100, Every: time.Second}
)

// webhookReceiver is a local witness webhook: it reads each checkpoint and
// answers 204, counting what it received.
type webhookReceiver struct {
	srv      *httptest.Server
	received atomic.Int64
}

func newWebhookReceiver() *webhookReceiver {
	r := &webhookReceiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.received.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	return r
}

func (r *webhookReceiver) Close() error { r.srv.Close(); return nil }

// checkpointsScenario compares grants on a broker that signs checkpoints
// every cp and hands each to a directory witness and a webhook witness
// against the same broker without the checkpointer. Both write the Merkle
// tree hashes in every append (they are part of the ledger, not of
// checkpointing).
func checkpointsScenario(name, id string, dir string, p *pki, cp daemon.LedgerCheckpointConfig) (_ *scenario, err error) {
	var cl closers
	defer func() {
		if err != nil {
			_ = cl.Close()
		}
	}()
	hook := newWebhookReceiver()
	cl = append(cl, hook.Close)
	witnessDir := mkdir(dir, "witness")
	on, err := startBroker(brokerConfig{Dir: mkdir(dir, "on"), PKI: p, Ledger: ledgerDurable, Checkpoints: &daemon.LedgerConfig{
		Checkpoint: cp,
		Witnesses:  []daemon.LedgerWitnessConfig{{Dir: witnessDir}, {Webhook: hook.srv.URL}},
	}})
	if err != nil {
		return nil, err
	}
	cl = append(cl, on.Close)
	off, err := startBroker(brokerConfig{Dir: mkdir(dir, "off"), PKI: p, Ledger: ledgerDurable, NoCheckpoints: true})
	if err != nil {
		return nil, err
	}
	cl = append(cl, off.Close)
	ccA, err := dial(on.Addr, p.clientCreds())
	if err != nil {
		return nil, err
	}
	cl = append(cl, ccA.Close)
	ccB, err := dial(off.Addr, p.clientCreds())
	if err != nil {
		return nil, err
	}
	cl = append(cl, ccB.Close)
	return &scenario{
		ID: id, Name: name,
		Title: fmt.Sprintf("checkpoints and witnesses on (every %d records / %s) vs off", cp.EveryRecords, cp.Every),
		A: variant{Name: "on", Op: issueOp(brokerv1.NewBrokerServiceClient(ccA), entJWT),
			Desc: fmt.Sprintf("checkpointer signing every %d records or %s (Ed25519 signed note, stored in bbolt), a directory witness and a webhook witness (a local HTTP receiver)", cp.EveryRecords, cp.Every)},
		B: variant{Name: "off", Op: issueOp(brokerv1.NewBrokerServiceClient(ccB), entJWT),
			Desc: "same broker without the checkpointer (daemon.Options.NoCheckpoints, a benchmark-only switch): no signing, no witnesses"},
		RatioName: "on / off", NumIsA: true, Durable: true,
		Notes: []string{
			"Two brokers run side by side in this process, each with its own durable bbolt ledger and persistent mTLS connection; grants are auto-approved EdDSA JWTs. Both write the Merkle tree hashes and indexes in every append; only signing, storing and delivering checkpoints differ.",
			"The checkpointer runs in its own goroutine, woken (without blocking) by each commit; it reads the tree size, and when a threshold is reached computes the root, signs it, stores it in its own bbolt transaction and queues it for the witnesses, which deliver in their own goroutines.",
		},
		After: func(ctx context.Context) []string {
			var lines []string
			n, _, err := on.VerifyLedger(ctx)
			if err != nil {
				lines = append(lines, fmt.Sprintf("Ledger with checkpoints after the run: %d records, **verification failed**: %v", n, err))
			} else {
				lines = append(lines, fmt.Sprintf("Ledger with checkpoints after the run: %d records; it verifies.", n))
			}
			lines = append(lines, fmt.Sprintf("Checkpoints delivered during the run (before the one at shutdown): %d to the webhook, %d to the directory witness.",
				hook.received.Load(), countLines(filepath.Join(witnessDir, checkpoint.CheckpointsFile))))
			return lines
		},
		Close: cl.Close,
	}, nil
}

// countLines counts checkpoint notes in a directory witness's file: each
// signed note ends with a signature line starting with "— ".
func countLines(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("\n— "))
}
