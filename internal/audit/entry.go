package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"time"
	"unicode/utf8"
)

// Version is the version of the canonical encoding, recorded in every entry
// as "v". Decode rejects any other version.
const Version = 1

// ZeroHash is the PrevHash of the first entry (Seq 1): 64 hex zeros.
const ZeroHash = "0000000000000000000000000000000000000000000000000000000000000000"

// Entry is one record of the ledger: an Event, its position in the chain and
// the hashes that link it to its predecessor.
type Entry struct {
	// Seq is the entry's position. The first entry is 1; there are no gaps.
	Seq uint64
	// Time is when the entry was made, in UTC, as read from the Log's clock.
	Time time.Time
	// Event is what was recorded.
	Event
	// PrevHash is the Hash of the entry with Seq-1, or ZeroHash for Seq 1.
	PrevHash string
	// Hash is the lowercase hex SHA-256 of the entry's Canonical encoding.
	Hash string
}

// record is the canonical wire form of an Entry. Its field order is the
// encoding's field order: changing it changes every hash (see doc.go and
// testdata/chain.golden).
type record struct {
	V              int               `json:"v"`
	Seq            uint64            `json:"seq"`
	Time           string            `json:"time"`
	Action         string            `json:"action"`
	Actor          string            `json:"actor"`
	Subject        string            `json:"subject"`
	Entitlement    string            `json:"entitlement"`
	Rule           string            `json:"rule"`
	Outcome        string            `json:"outcome"`
	Reason         string            `json:"reason"`
	GrantID        string            `json:"grant_id"`
	TTLNanos       int64             `json:"ttl_ns"`
	CredentialKind string            `json:"credential_kind"`
	CredentialRef  string            `json:"credential_ref"`
	Expires        string            `json:"expires"`
	Details        map[string]string `json:"details,omitempty"`
	PrevHash       string            `json:"prev_hash"`
	Hash           string            `json:"hash,omitempty"`
}

func (e Entry) record(withHash bool) record {
	r := record{
		V:              Version,
		Seq:            e.Seq,
		Time:           formatTime(e.Time),
		Action:         e.Action,
		Actor:          e.Actor,
		Subject:        e.Subject,
		Entitlement:    e.Entitlement,
		Rule:           e.Rule,
		Outcome:        e.Outcome,
		Reason:         e.Reason,
		GrantID:        e.GrantID,
		TTLNanos:       int64(e.TTL),
		CredentialKind: e.CredentialKind,
		CredentialRef:  e.CredentialRef,
		Details:        e.Details,
		PrevHash:       e.PrevHash,
	}
	if !e.Expires.IsZero() {
		r.Expires = formatTime(e.Expires)
	}
	if withHash {
		r.Hash = e.Hash
	}
	return r
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func marshal(r record) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	// A record holds only strings, integers and a map[string]string, which
	// always encode.
	if err := enc.Encode(r); err != nil {
		panic("audit: encode record: " + err.Error())
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// Canonical returns the bytes that Hash is computed over: the entry's
// canonical JSON encoding without the "hash" field. See the package
// documentation for the format. Strings that are not valid UTF-8 are
// replaced by U+FFFD, which is why Encode rejects them.
func (e Entry) Canonical() []byte { return marshal(e.record(false)) }

// ComputeHash returns the lowercase hex SHA-256 of e.Canonical(). It ignores
// e.Hash.
func (e Entry) ComputeHash() string {
	sum := sha256.Sum256(e.Canonical())
	return hex.EncodeToString(sum[:])
}

// Encode returns the stored form of e: its canonical encoding with the
// "hash" field appended. It returns ErrInvalid if e cannot be encoded
// faithfully (see ErrInvalid). It does not check that e.Hash is correct;
// Verify does.
func Encode(e Entry) ([]byte, error) {
	if err := validate(e); err != nil {
		return nil, fmt.Errorf("encode entry %d: %w", e.Seq, err)
	}
	return marshal(e.record(true)), nil
}

// Decode parses a stored record. It is strict: it returns ErrMalformed unless
// b is exactly what Encode returns for the decoded entry, so unknown,
// missing, duplicated or reordered fields, other whitespace or escaping, and
// trailing bytes are all rejected. A decoded entry's times are in UTC and an
// absent Details is nil.
func Decode(b []byte) (Entry, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r record
	if err := dec.Decode(&r); err != nil {
		return Entry{}, fmt.Errorf("decode entry: %w: %w", ErrMalformed, err)
	}
	if r.V != Version {
		return Entry{}, fmt.Errorf("decode entry: %w: unsupported version %d", ErrMalformed, r.V)
	}
	e := Entry{
		Seq: r.Seq,
		Event: Event{
			Action:         r.Action,
			Actor:          r.Actor,
			Subject:        r.Subject,
			Entitlement:    r.Entitlement,
			Rule:           r.Rule,
			Outcome:        r.Outcome,
			Reason:         r.Reason,
			GrantID:        r.GrantID,
			TTL:            time.Duration(r.TTLNanos),
			CredentialKind: r.CredentialKind,
			CredentialRef:  r.CredentialRef,
			Details:        r.Details,
		},
		PrevHash: r.PrevHash,
		Hash:     r.Hash,
	}
	var err error
	if e.Time, err = time.Parse(time.RFC3339Nano, r.Time); err != nil {
		return Entry{}, fmt.Errorf("decode entry %d: time: %w: %w", r.Seq, ErrMalformed, err)
	}
	e.Time = e.Time.UTC()
	if r.Expires != "" {
		if e.Expires, err = time.Parse(time.RFC3339Nano, r.Expires); err != nil {
			return Entry{}, fmt.Errorf("decode entry %d: expires: %w: %w", r.Seq, ErrMalformed, err)
		}
		e.Expires = e.Expires.UTC()
	}
	if err := validate(e); err != nil {
		return Entry{}, fmt.Errorf("decode entry %d: %w: %w", r.Seq, ErrMalformed, err)
	}
	if !bytes.Equal(marshal(e.record(true)), b) {
		return Entry{}, fmt.Errorf("decode entry %d: %w: not in canonical form", r.Seq, ErrMalformed)
	}
	return e, nil
}

// CheckNext reports whether next may be appended to a ledger whose last
// entry is head (ok is false for an empty ledger). It returns ErrNotNext
// unless next.Seq is head.Seq+1 (1 when empty), next.PrevHash is head.Hash
// (ZeroHash when empty) and next.Hash is next.ComputeHash(). Stores call it
// inside their append transaction.
func CheckNext(head Entry, ok bool, next Entry) error {
	wantSeq, wantPrev := uint64(1), ZeroHash
	if ok {
		wantSeq, wantPrev = head.Seq+1, head.Hash
	}
	switch {
	case next.Seq != wantSeq:
		return fmt.Errorf("entry seq %d, want %d: %w", next.Seq, wantSeq, ErrNotNext)
	case next.PrevHash != wantPrev:
		return fmt.Errorf("entry %d prev_hash %.12s…, want %.12s…: %w", next.Seq, next.PrevHash, wantPrev, ErrNotNext)
	case next.Hash != next.ComputeHash():
		return fmt.Errorf("entry %d hash is not its computed hash: %w", next.Seq, ErrNotNext)
	}
	return nil
}

// validate returns ErrInvalid if e cannot round-trip through the canonical
// encoding unchanged.
func validate(e Entry) error {
	if err := validateFields(e); err != nil {
		return err
	}
	if !isHash(e.PrevHash) {
		return fmt.Errorf("prev_hash %q is not 64 lowercase hex digits: %w", e.PrevHash, ErrInvalid)
	}
	if !isHash(e.Hash) {
		return fmt.Errorf("hash %q is not 64 lowercase hex digits: %w", e.Hash, ErrInvalid)
	}
	return nil
}

// validateFields is validate without the hash checks, for an entry that is
// not linked yet.
func validateFields(e Entry) error {
	for name, s := range map[string]string{
		"action": e.Action, "actor": e.Actor, "subject": e.Subject,
		"entitlement": e.Entitlement, "rule": e.Rule, "outcome": e.Outcome,
		"reason": e.Reason, "grant_id": e.GrantID, "credential_kind": e.CredentialKind,
		"credential_ref": e.CredentialRef,
	} {
		if !utf8.ValidString(s) {
			return fmt.Errorf("%s is not valid UTF-8: %w", name, ErrInvalid)
		}
	}
	for k, v := range e.Details {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return fmt.Errorf("details %q is not valid UTF-8: %w", k, ErrInvalid)
		}
	}
	if !validYear(e.Time) {
		return fmt.Errorf("time %v out of range: %w", e.Time, ErrInvalid)
	}
	if !e.Expires.IsZero() && !validYear(e.Expires) {
		return fmt.Errorf("expires %v out of range: %w", e.Expires, ErrInvalid)
	}
	return nil
}

func validYear(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 0 && y <= 9999
}

func isHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// normalize returns ev as Log records it: times in UTC, and Details copied,
// or nil when empty, so that the entry Append returns equals the entry Decode
// later reads back.
func normalize(ev Event) Event {
	if !ev.Expires.IsZero() {
		ev.Expires = ev.Expires.UTC()
	}
	if len(ev.Details) == 0 {
		ev.Details = nil
	} else {
		ev.Details = maps.Clone(ev.Details)
	}
	return ev
}
