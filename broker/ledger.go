package broker

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"slices"

	"github.com/writ-dev/writ/internal/audit"
	adminv1 "github.com/writ-dev/writ/proto/writ/admin/v1"
)

// LedgerReader reads the stored ledger for auditors: export, indexed
// search and consistent snapshots of the store (boltstore.Store).
type LedgerReader interface {
	// ExportRecords calls fn with each stored record q matches, in
	// sequence order, as stored.
	ExportRecords(ctx context.Context, q audit.Query, fn func(audit.Record) error) error
	// SearchRecords returns one page of the records q matches and the
	// cursor of the next page (0: none).
	SearchRecords(ctx context.Context, q audit.Query, p audit.Page) ([]audit.Record, uint64, error)
	// WriteSnapshot writes a consistent copy of the store to w.
	WriteSnapshot(ctx context.Context, w io.Writer) (int64, error)
}

// DefaultAuditorGroups is who may read the ledger when Config.AuditorGroups
// is empty (besides operators).
var DefaultAuditorGroups = []string{"auditors"}

const (
	// exportBatch is how many records one ExportLedger message carries.
	exportBatch = 256
	// snapshotChunk is the size of one Snapshot message.
	snapshotChunk = 256 << 10
	// searchPageMax is the largest SearchLedger page.
	searchPageMax = 1000
)

// ledgerReads checks that this broker can read its ledger. Who may read it
// (operators and the auditor groups) is the authorization table's rule.
func (s *Server) ledgerReads(context.Context) error {
	if s.records == nil {
		return errNoLedgerReads
	}
	return nil
}

// ExportLedger streams the stored records that match, as stored.
func (s *Server) ExportLedger(req *adminv1.ExportLedgerRequest, stream adminv1.AdminService_ExportLedgerServer) error {
	ctx := stream.Context()
	if err := s.ledgerReads(ctx); err != nil {
		return s.toStatus(ctx, err)
	}
	q := audit.Query{Actions: req.GetActions(), FromSeq: req.GetFromSeq(), ToSeq: req.GetToSeq()}
	if req.Since != nil {
		q.Since = req.GetSince().AsTime()
	}
	if req.Until != nil {
		q.Until = req.GetUntil().AsTime()
	}
	batch := &adminv1.ExportLedgerResponse{}
	flush := func() error {
		if len(batch.Records) == 0 {
			return nil
		}
		err := stream.Send(batch)
		batch = &adminv1.ExportLedgerResponse{}
		return err
	}
	err := s.records.ExportRecords(ctx, q, func(r audit.Record) error {
		batch.Records = append(batch.Records, &adminv1.LedgerRecord{Seq: r.Seq, Record: r.Raw})
		if len(batch.Records) == exportBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	return s.toStatus(ctx, err)
}

// SearchLedger returns one page of the records that match.
func (s *Server) SearchLedger(ctx context.Context, req *adminv1.SearchLedgerRequest) (*adminv1.SearchLedgerResponse, error) {
	if err := s.ledgerReads(ctx); err != nil {
		return nil, s.toStatus(ctx, err)
	}
	q := audit.Query{Identity: req.GetIdentity(), Entitlement: req.GetEntitlement(), Actions: req.GetActions(),
		GrantID: req.GetGrantId(), RefID: req.GetRequestId()}
	if req.Since != nil {
		q.Since = req.GetSince().AsTime()
	}
	if req.Until != nil {
		q.Until = req.GetUntil().AsTime()
	}
	p := audit.Page{Limit: 100, OldestFirst: req.GetOldestFirst()}
	if n := int(req.GetPageSize()); n > 0 {
		p.Limit = min(n, searchPageMax)
	}
	if t := req.GetPageToken(); t != "" {
		after, err := parsePageToken(t, p.OldestFirst)
		if err != nil {
			return nil, s.toStatus(ctx, err)
		}
		p.After = after
	}
	recs, next, err := s.records.SearchRecords(ctx, q, p)
	if err != nil {
		return nil, s.toStatus(ctx, err)
	}
	resp := &adminv1.SearchLedgerResponse{}
	for _, r := range recs {
		resp.Records = append(resp.Records, &adminv1.LedgerRecord{Seq: r.Seq, Record: r.Raw})
	}
	if next != 0 {
		resp.NextPageToken = pageToken(next, p.OldestFirst)
	}
	return resp, nil
}

// pageToken encodes a search cursor: the direction and the sequence number
// to continue after.
func pageToken(after uint64, oldestFirst bool) string {
	dir := byte('n')
	if oldestFirst {
		dir = 'o'
	}
	return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint64([]byte{dir}, after))
}

func parsePageToken(t string, oldestFirst bool) (uint64, error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil || len(b) != 9 || (b[0] != 'n' && b[0] != 'o') {
		return 0, fmt.Errorf("page_token %q is not one this broker issued: %w", t, errBadRequest)
	}
	if (b[0] == 'o') != oldestFirst {
		return 0, fmt.Errorf("page_token is for the other order (oldest_first): %w", errBadRequest)
	}
	return binary.BigEndian.Uint64(b[1:]), nil
}

// Snapshot streams a consistent copy of the database.
func (s *Server) Snapshot(_ *adminv1.SnapshotRequest, stream adminv1.AdminService_SnapshotServer) error {
	ctx := stream.Context()
	c, err := authorized(ctx)
	if err == nil && s.records == nil {
		err = errNoLedgerReads
	}
	if err != nil {
		return s.toStatus(ctx, err)
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&adminv1.SnapshotResponse{Data: b}) }}
	n, err := s.records.WriteSnapshot(ctx, w)
	if err == nil {
		err = w.flush()
	}
	if err != nil {
		return s.toStatus(ctx, err)
	}
	s.log.InfoContext(ctx, "snapshot taken", "by", c.principal().String(), "bytes", n)
	return nil
}

// chunkWriter sends what is written in chunks of snapshotChunk bytes.
type chunkWriter struct {
	buf  []byte
	send func([]byte) error
}

func (w *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if w.buf == nil {
			w.buf = make([]byte, 0, snapshotChunk)
		}
		k := min(len(p), snapshotChunk-len(w.buf))
		w.buf = append(w.buf, p[:k]...)
		p = p[k:]
		if len(w.buf) == snapshotChunk {
			if err := w.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

func (w *chunkWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	err := w.send(w.buf)
	w.buf = nil // the message owns the old buffer until it is sent
	return err
}

// ledgerEvidence returns the ledger's records about a break-glass use and
// its credential, oldest first (at most limit, the newest), from the
// indexes: never a scan of the ledger.
func (s *Server) ledgerEvidence(ctx context.Context, refID, grantID string, limit int) ([]*adminv1.LedgerEvent, error) {
	if s.records == nil {
		return nil, nil
	}
	seen := map[uint64]audit.Entry{}
	for _, q := range []audit.Query{{RefID: refID}, {GrantID: grantID}} {
		if q.RefID == "" && q.GrantID == "" {
			continue
		}
		recs, _, err := s.records.SearchRecords(ctx, q, audit.Page{Limit: limit})
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			e, err := audit.Decode(r.Raw)
			if err != nil {
				return nil, fmt.Errorf("ledger record %d: %w", r.Seq, err)
			}
			seen[r.Seq] = e
		}
	}
	seqs := slices.Sorted(maps.Keys(seen))
	if len(seqs) > limit {
		seqs = seqs[len(seqs)-limit:]
	}
	out := make([]*adminv1.LedgerEvent, 0, len(seqs))
	for _, seq := range seqs {
		e := seen[seq]
		out = append(out, &adminv1.LedgerEvent{Seq: e.Seq, Time: ts(e.Time), Action: e.Action, Outcome: e.Outcome, Actor: e.Actor, Reason: e.Reason})
	}
	return out, nil
}
