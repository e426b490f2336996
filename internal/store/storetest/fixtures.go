package storetest

import (
	"reflect"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/writ-dev/writ/approval"
)

// epoch is the suite's pinned clock origin.
var epoch = time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)

// Principals used by the fixtures. benefAB has benefA as a prefix, to
// catch prefix scans that do not stop at the end of a principal.
const (
	requester  approval.Principal = "oidc:https://idp.example.com#alice"
	requester2 approval.Principal = "oidc:https://idp.example.com#bob"
	benefA     approval.Principal = "spiffe://example.org/ns/prod/sa/api"
	benefAB    approval.Principal = "spiffe://example.org/ns/prod/sa/api2"
	reviewer   approval.Principal = "oidc:https://idp.example.com#carol"
)

// requestOpts compares requests, ignoring the store-assigned Version and
// the difference between nil and empty slices.
var requestOpts = cmp.Options{
	cmpopts.IgnoreFields(approval.Request{}, "Version"),
	cmpopts.EquateEmpty(),
}

// fullRequest returns a pending request with every field set (Version
// aside), created at epoch+offset.
func fullRequest(id string, offset time.Duration) approval.Request {
	created := epoch.Add(offset)
	return approval.Request{
		ID:           id,
		Requester:    requester,
		Beneficiary:  benefA,
		Entitlement:  "db-admin",
		Duration:     2 * time.Hour,
		Reason:       "INC-42: restore the orders table",
		Ticket:       "INC-42",
		Rule:         "prod-operators",
		State:        approval.StatePending,
		CreatedAt:    created,
		PendingUntil: created.Add(24 * time.Hour),
		Reviews: []approval.Review{{
			Reviewer: reviewer,
			Groups:   []string{"dba", "sre"},
			Decision: approval.DecisionApprove,
			Comment:  "looks right",
			Stage:    1,
			At:       created.Add(time.Minute),
		}},
		ApprovedAt:     created.Add(2 * time.Minute),
		WindowEnd:      created.Add(2*time.Minute + 2*time.Hour),
		ResolvedAt:     created.Add(2 * time.Minute),
		ResolvedBy:     reviewer,
		ResolutionNote: "approved in stage 1",
		Version:        99, // the store must ignore it
	}
}

// pendingRequest returns a minimal pending request.
func pendingRequest(id string, offset time.Duration) approval.Request {
	created := epoch.Add(offset)
	return approval.Request{
		ID:           id,
		Requester:    requester,
		Beneficiary:  benefA,
		Entitlement:  "db-admin",
		Duration:     time.Hour,
		State:        approval.StatePending,
		CreatedAt:    created,
		PendingUntil: created.Add(time.Hour),
	}
}

// grantAt returns a grant of requestID issued at epoch+offset.
func grantAt(requestID, grantID string, offset time.Duration) approval.GrantRecord {
	issued := epoch.Add(offset)
	return approval.GrantRecord{
		GrantID:   grantID,
		RequestID: requestID,
		Ref:       approval.CredentialRef{Kind: approval.KindVaultToken, ID: "accessor-" + grantID, Expires: issued.Add(15 * time.Minute)},
		IssuedAt:  issued,
	}
}

// checkAllFieldsSet fails the test if any field of the struct v (and of
// the first element of any slice field, and of nested structs other than
// time.Time) is the zero value, except those named in skip. It keeps the
// round-trip fixtures complete when a domain type grows a field.
func checkAllFieldsSet(t *testing.T, v any, skip ...string) {
	t.Helper()
	var walk func(path string, rv reflect.Value)
	walk = func(path string, rv reflect.Value) {
		for i := range rv.NumField() {
			f := rv.Type().Field(i)
			name := path + f.Name
			skipped := false
			for _, s := range skip {
				skipped = skipped || s == name
			}
			fv := rv.Field(i)
			switch {
			case skipped:
			case fv.IsZero():
				t.Errorf("%T fixture leaves %s zero: set it, so the round trip covers it", v, name)
			case fv.Kind() == reflect.Struct && fv.Type() != reflect.TypeFor[time.Time]():
				walk(name+".", fv)
			case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
				walk(name+"[0].", fv.Index(0))
			}
		}
	}
	walk("", reflect.ValueOf(v))
}
