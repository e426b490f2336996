package broker

import (
	"context"
	"fmt"

	"github.com/writ-dev/writ/internal/audit"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// ledgerProver is what ProveRecord needs beyond a LedgerReader: the stored
// Merkle tree and the newest signed checkpoint (boltstore.Store has both).
type ledgerProver interface {
	audit.TreeReader
	LatestCheckpoint(ctx context.Context) (size int64, signed []byte, ok bool, err error)
}

// ProveRecord returns a record, its inclusion proof and the checkpoint the
// proof leads to.
func (s *Server) ProveRecord(ctx context.Context, req *adminv1.ProveRecordRequest) (*adminv1.ProveRecordResponse, error) {
	if err := s.ledgerReads(ctx); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	prover, ok := s.records.(ledgerProver)
	if !ok {
		return nil, s.toStatus(ctx, fmt.Errorf("this broker keeps no Merkle tree: %w", errNoLedgerReads))
	}
	rec, err := s.findRecord(ctx, req)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	size, signed, ok, err := prover.LatestCheckpoint(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	if !ok || uint64(size) < rec.Seq {
		return nil, s.toStatus(ctx, fmt.Errorf("record %d is not covered by a signed checkpoint yet (the newest covers %d records); one is signed every few records or seconds, try again: %w",
			rec.Seq, size, errNotCovered))
	}
	proof, err := audit.InclusionProof(ctx, prover, int64(rec.Seq), size)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &adminv1.ProveRecordResponse{Record: &adminv1.LedgerRecord{Seq: rec.Seq, Record: rec.Raw}, Checkpoint: signed, TreeSize: size}
	for _, h := range proof {
		resp.Proof = append(resp.Proof, h[:])
	}
	return resp, nil
}

// findRecord returns the record req names, from the indexes.
func (s *Server) findRecord(ctx context.Context, req *adminv1.ProveRecordRequest) (audit.Record, error) {
	var q audit.Query
	switch {
	case (req.GetGrantId() == "") == (req.GetSeq() == 0):
		return audit.Record{}, fmt.Errorf("name exactly one of grant_id and seq: %w", errBadRequest)
	case req.GetGrantId() != "":
		q.GrantID = req.GetGrantId()
	default:
		q.FromSeq, q.ToSeq = req.GetSeq(), req.GetSeq()
	}
	recs, _, err := s.records.SearchRecords(ctx, q, audit.Page{Limit: 1, OldestFirst: true})
	if err != nil {
		return audit.Record{}, err
	}
	if len(recs) == 0 {
		return audit.Record{}, fmt.Errorf("no ledger record for grant %q, seq %d: %w", req.GetGrantId(), req.GetSeq(), errNoRecord)
	}
	return recs[0], nil
}
