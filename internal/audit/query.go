package audit

import (
	"slices"
	"time"
)

// Query selects ledger records, for export and search. Every set field must
// match (AND); the zero Query matches every record.
type Query struct {
	// Identity matches a record whose Actor or Subject is exactly this
	// principal (a SPIFFE ID, or "oidc:<iss>#<sub>").
	Identity string
	// Entitlement matches the record's Entitlement exactly.
	Entitlement string
	// Actions matches a record whose Action is one of these.
	Actions []string
	// GrantID matches the record's GrantID exactly.
	GrantID string
	// RefID matches a record about this access request or break-glass use:
	// its Details "request_id" or "break_glass_id".
	RefID string
	// Since, if set, matches records with Time at or after it.
	Since time.Time
	// Until, if set, matches records with Time before it.
	Until time.Time
	// FromSeq and ToSeq, if non-zero, bound the sequence numbers
	// (inclusive).
	FromSeq, ToSeq uint64
}

// ByContent reports whether q filters on anything but the sequence range,
// so that a record must be decoded to tell whether it matches.
func (q Query) ByContent() bool {
	return q.Identity != "" || q.Entitlement != "" || len(q.Actions) > 0 || q.GrantID != "" ||
		q.RefID != "" || !q.Since.IsZero() || !q.Until.IsZero()
}

// InRange reports whether seq is within [FromSeq, ToSeq].
func (q Query) InRange(seq uint64) bool {
	return seq >= q.FromSeq && (q.ToSeq == 0 || seq <= q.ToSeq)
}

// Match reports whether e satisfies every filter of q.
func (q Query) Match(e Entry) bool {
	switch {
	case !q.InRange(e.Seq),
		q.Identity != "" && e.Actor != q.Identity && e.Subject != q.Identity,
		q.Entitlement != "" && e.Entitlement != q.Entitlement,
		len(q.Actions) > 0 && !slices.Contains(q.Actions, e.Action),
		q.GrantID != "" && e.GrantID != q.GrantID,
		q.RefID != "" && e.Details["request_id"] != q.RefID && e.Details["break_glass_id"] != q.RefID,
		!q.Since.IsZero() && e.Time.Before(q.Since),
		!q.Until.IsZero() && !e.Time.Before(q.Until):
		return false
	}
	return true
}

// RefIDs returns the IDs of the access request and break-glass use that e is
// about (Details "request_id" and "break_glass_id"), for stores that index
// them.
func (e Entry) RefIDs() []string {
	var out []string
	for _, k := range []string{"request_id", "break_glass_id"} {
		if v := e.Details[k]; v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// Record is one stored ledger record: its sequence number and its stored
// bytes, exactly as Encode wrote them (the bytes that Verify checks and that
// an export reproduces).
type Record struct {
	Seq uint64
	Raw []byte
}

// Page asks for one page of a search.
type Page struct {
	// After is the cursor a previous page returned: the walk continues
	// past this sequence number in its direction. 0 starts at the newest
	// record (the oldest with OldestFirst).
	After uint64
	// Limit is the most records to return; 0 means a store default.
	Limit int
	// OldestFirst walks in increasing sequence order instead of newest
	// first.
	OldestFirst bool
}
