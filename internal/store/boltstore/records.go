package boltstore

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/writ-dev/writ/approval"
)

// recordVersion is the format version of every JSON record this file
// defines (the "v" field). A record with another version is refused with
// ErrCorruptRecord rather than half-read.
const recordVersion = 1

// The record types below are the stored form of domain values. They carry
// explicit JSON names so that renaming a Go field never silently changes
// or drops stored data. The storetest suite round-trips fixtures that set
// every field (checked by reflection), so it fails when a domain type grows
// a field that is not stored here.

// requestRecord is the stored form of an approval.Request.
type requestRecord struct {
	V              int            `json:"v"`
	Version        uint64         `json:"version"`
	ID             string         `json:"id"`
	Requester      string         `json:"requester"`
	Beneficiary    string         `json:"beneficiary"`
	Entitlement    string         `json:"entitlement"`
	Duration       time.Duration  `json:"duration_ns"`
	Reason         string         `json:"reason,omitempty"`
	Ticket         string         `json:"ticket,omitempty"`
	Rule           string         `json:"rule,omitempty"`
	State          string         `json:"state"`
	CreatedAt      time.Time      `json:"created_at"`
	PendingUntil   time.Time      `json:"pending_until"`
	Reviews        []reviewRecord `json:"reviews,omitempty"`
	ApprovedAt     time.Time      `json:"approved_at"`
	WindowEnd      time.Time      `json:"window_end"`
	ResolvedAt     time.Time      `json:"resolved_at"`
	ResolvedBy     string         `json:"resolved_by,omitempty"`
	ResolutionNote string         `json:"resolution_note,omitempty"`
}

// reviewRecord is the stored form of an approval.Review.
type reviewRecord struct {
	Reviewer string    `json:"reviewer"`
	Groups   []string  `json:"groups,omitempty"`
	Decision string    `json:"decision"`
	Comment  string    `json:"comment,omitempty"`
	Stage    int       `json:"stage"`
	At       time.Time `json:"at"`
}

// grantRecord is the stored form of an approval.GrantRecord. Beneficiary
// is copied from the request when the grant is added, so that the index
// entry can be found again from the record alone.
type grantRecord struct {
	V           int       `json:"v"`
	GrantID     string    `json:"grant_id"`
	RequestID   string    `json:"request_id"`
	Beneficiary string    `json:"beneficiary"`
	Ref         refRecord `json:"ref"`
	IssuedAt    time.Time `json:"issued_at"`
}

// refRecord is the stored form of an approval.CredentialRef.
type refRecord struct {
	Kind    string    `json:"kind"`
	ID      string    `json:"id"`
	Expires time.Time `json:"expires"`
}

func toRequestRecord(r approval.Request) requestRecord {
	rec := requestRecord{
		V:              recordVersion,
		Version:        r.Version,
		ID:             r.ID,
		Requester:      string(r.Requester),
		Beneficiary:    string(r.Beneficiary),
		Entitlement:    r.Entitlement,
		Duration:       r.Duration,
		Reason:         r.Reason,
		Ticket:         r.Ticket,
		Rule:           r.Rule,
		State:          string(r.State),
		CreatedAt:      r.CreatedAt,
		PendingUntil:   r.PendingUntil,
		ApprovedAt:     r.ApprovedAt,
		WindowEnd:      r.WindowEnd,
		ResolvedAt:     r.ResolvedAt,
		ResolvedBy:     string(r.ResolvedBy),
		ResolutionNote: r.ResolutionNote,
	}
	for _, rv := range r.Reviews {
		rec.Reviews = append(rec.Reviews, reviewRecord{
			Reviewer: string(rv.Reviewer),
			Groups:   rv.Groups,
			Decision: string(rv.Decision),
			Comment:  rv.Comment,
			Stage:    rv.Stage,
			At:       rv.At,
		})
	}
	return rec
}

func (rec requestRecord) request() approval.Request {
	r := approval.Request{
		ID:             rec.ID,
		Requester:      approval.Principal(rec.Requester),
		Beneficiary:    approval.Principal(rec.Beneficiary),
		Entitlement:    rec.Entitlement,
		Duration:       rec.Duration,
		Reason:         rec.Reason,
		Ticket:         rec.Ticket,
		Rule:           rec.Rule,
		State:          approval.State(rec.State),
		CreatedAt:      rec.CreatedAt,
		PendingUntil:   rec.PendingUntil,
		ApprovedAt:     rec.ApprovedAt,
		WindowEnd:      rec.WindowEnd,
		ResolvedAt:     rec.ResolvedAt,
		ResolvedBy:     approval.Principal(rec.ResolvedBy),
		ResolutionNote: rec.ResolutionNote,
		Version:        rec.Version,
	}
	for _, rv := range rec.Reviews {
		r.Reviews = append(r.Reviews, approval.Review{
			Reviewer: approval.Principal(rv.Reviewer),
			Groups:   rv.Groups,
			Decision: approval.Decision(rv.Decision),
			Comment:  rv.Comment,
			Stage:    rv.Stage,
			At:       rv.At,
		})
	}
	return r
}

func toGrantRecord(g approval.GrantRecord, beneficiary approval.Principal) grantRecord {
	return grantRecord{
		V:           recordVersion,
		GrantID:     g.GrantID,
		RequestID:   g.RequestID,
		Beneficiary: string(beneficiary),
		Ref:         toRefRecord(g.Ref),
		IssuedAt:    g.IssuedAt,
	}
}

func (rec grantRecord) grant() approval.GrantRecord {
	return approval.GrantRecord{
		GrantID:   rec.GrantID,
		RequestID: rec.RequestID,
		Ref:       rec.Ref.ref(),
		IssuedAt:  rec.IssuedAt,
	}
}

func toRefRecord(r approval.CredentialRef) refRecord {
	return refRecord{Kind: string(r.Kind), ID: r.ID, Expires: r.Expires}
}

func (rec refRecord) ref() approval.CredentialRef {
	return approval.CredentialRef{Kind: approval.CredentialKind(rec.Kind), ID: rec.ID, Expires: rec.Expires}
}

// encodeRecord marshals a record. Records hold only JSON-safe types, so an
// error here is a bug, not bad data.
func encodeRecord(what string, rec any) ([]byte, error) {
	raw, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", what, err)
	}
	return raw, nil
}

// decodeRecord unmarshals raw into rec, whose "v" field must then equal
// recordVersion. json.Unmarshal copies what it keeps, so rec outlives the
// transaction raw came from. It returns an error wrapping ErrCorruptRecord.
func decodeRecord(what string, raw []byte, rec any, version func() int) error {
	if err := json.Unmarshal(raw, rec); err != nil {
		return fmt.Errorf("decode %s: %w: %w", what, ErrCorruptRecord, err)
	}
	if v := version(); v != recordVersion {
		return fmt.Errorf("decode %s: record version %d, this writd reads %d: %w", what, v, recordVersion, ErrCorruptRecord)
	}
	return nil
}

func decodeRequest(key, raw []byte) (approval.Request, error) {
	var rec requestRecord
	if err := decodeRecord("request "+string(key), raw, &rec, func() int { return rec.V }); err != nil {
		return approval.Request{}, err
	}
	if rec.ID != string(key) {
		return approval.Request{}, fmt.Errorf("decode request %s: record holds request %q: %w", key, rec.ID, ErrCorruptRecord)
	}
	return rec.request(), nil
}

func decodeGrant(key, raw []byte) (grantRecord, error) {
	var rec grantRecord
	if err := decodeRecord("grant "+string(key), raw, &rec, func() int { return rec.V }); err != nil {
		return grantRecord{}, err
	}
	if want := grantKey(rec.RequestID, rec.GrantID); string(key) != string(want) {
		return grantRecord{}, fmt.Errorf("decode grant %s: record holds %q: %w", key, want, ErrCorruptRecord)
	}
	return rec, nil
}
