package audit_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/writ-dev/writ/internal/audit"
)

func TestNew_RequiresStore(t *testing.T) {
	t.Parallel()
	if _, err := audit.New(audit.Config{}); err == nil {
		t.Errorf("New(Config{}) err = nil, want error")
	}
}

func TestLog_Append(t *testing.T) {
	t.Parallel()
	l, s := newLog(t)
	evs := sampleEvents()
	var got []audit.Entry
	for _, ev := range evs {
		e, err := l.Append(t.Context(), ev)
		if err != nil {
			t.Fatalf("Append(%s) err = %v", ev.Action, err)
		}
		got = append(got, e)
	}
	for i, e := range got {
		if e.Seq != uint64(i+1) {
			t.Errorf("entry %d: Seq = %d, want %d", i, e.Seq, i+1)
		}
		if want := epoch.Add(time.Duration(i) * time.Second); !e.Time.Equal(want) || e.Time.Location() != time.UTC {
			t.Errorf("entry %d: Time = %v, want %v in UTC", i, e.Time, want)
		}
		wantPrev := audit.ZeroHash
		if i > 0 {
			wantPrev = got[i-1].Hash
		}
		if e.PrevHash != wantPrev {
			t.Errorf("entry %d: PrevHash = %s, want %s", i, e.PrevHash, wantPrev)
		}
		if e.Hash != e.ComputeHash() {
			t.Errorf("entry %d: Hash = %s, want %s", i, e.Hash, e.ComputeHash())
		}
		if diff := cmp.Diff(evs[i].Details, e.Details); len(evs[i].Details) > 0 && diff != "" {
			t.Errorf("entry %d: Details (-event +entry):\n%s", i, diff)
		}
	}
	sum, err := audit.Verify(t.Context(), s)
	if err != nil {
		t.Fatalf("Verify() err = %v", err)
	}
	if want := (audit.Summary{Records: 3, Head: got[2].Hash}); sum != want {
		t.Errorf("Verify() = %+v, want %+v", sum, want)
	}
}

func TestLog_Append_CopiesDetails(t *testing.T) {
	t.Parallel()
	l, _ := newLog(t)
	details := map[string]string{"k": "v"}
	e, err := l.Append(t.Context(), audit.Event{Action: "grant", Details: details})
	if err != nil {
		t.Fatalf("Append() err = %v", err)
	}
	details["k"] = "changed"
	if e.Details["k"] != "v" {
		t.Errorf("entry Details aliases the caller's map")
	}
	if e.Hash != e.ComputeHash() {
		t.Errorf("entry hash no longer matches after caller edited its map")
	}
}

func TestLog_Append_Errors(t *testing.T) {
	t.Parallel()
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	tests := []struct {
		name    string
		store   audit.Store
		ctx     context.Context
		ev      audit.Event
		wantErr error
	}{
		{"empty action is invalid", &memStore{}, t.Context(), audit.Event{Reason: "x"}, audit.ErrInvalid},
		{"invalid UTF-8 is invalid", &memStore{}, t.Context(), audit.Event{Action: "grant", Actor: "\xff"}, audit.ErrInvalid},
		{"expiry out of range is invalid", &memStore{}, t.Context(), audit.Event{Action: "grant", Expires: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)}, audit.ErrInvalid},
		{"store error is returned", &failStore{}, t.Context(), audit.Event{Action: "grant"}, errStoreDown},
		{"canceled context", &memStore{}, canceled, audit.Event{Action: "grant"}, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := audit.New(audit.Config{Store: tt.store, Now: stepClock(time.Second)})
			if err != nil {
				t.Fatalf("New() err = %v", err)
			}
			if _, err := l.Append(tt.ctx, tt.ev); !errors.Is(err, tt.wantErr) {
				t.Errorf("Append() err = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestLog_Append_Concurrent(t *testing.T) {
	t.Parallel()
	l, s := newLog(t)
	const n = 50
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := l.Append(t.Context(), audit.Event{Action: "grant"}); err != nil {
				t.Errorf("Append() err = %v", err)
			}
		})
	}
	wg.Wait()
	sum, err := audit.Verify(t.Context(), s)
	if err != nil || sum.Records != n {
		t.Errorf("Verify() = %+v, %v; want %d records", sum, err, n)
	}
}

func TestLog_Append_NeverLogsDetails(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	l, err := audit.New(audit.Config{
		Store:  &memStore{},
		Now:    stepClock(time.Second),
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatalf("New() err = %v", err)
	}
	if _, err := l.Append(t.Context(), audit.Event{Action: "grant", Reason: "reason-text", Details: map[string]string{"k": "details-text"}}); err != nil {
		t.Fatalf("Append() err = %v", err)
	}
	for _, s := range []string{"details-text", "reason-text"} {
		if bytes.Contains(buf.Bytes(), []byte(s)) {
			t.Errorf("log output %q contains %q", buf.String(), s)
		}
	}
}

func TestLog_Head(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		store     audit.Store
		wantHeads int
	}{
		{"store without HeadReader scans", &memStore{}, 0},
		{"store with HeadReader uses it", &headStore{}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l, err := audit.New(audit.Config{Store: tt.store, Now: stepClock(time.Second)})
			if err != nil {
				t.Fatalf("New() err = %v", err)
			}
			if _, ok, err := l.Head(t.Context()); ok || err != nil {
				t.Fatalf("Head() on empty ledger = ok %v, err %v; want false, nil", ok, err)
			}
			var last audit.Entry
			for range 3 {
				if last, err = l.Append(t.Context(), audit.Event{Action: "grant"}); err != nil {
					t.Fatalf("Append() err = %v", err)
				}
			}
			head, ok, err := l.Head(t.Context())
			if err != nil || !ok {
				t.Fatalf("Head() = ok %v, err %v; want true, nil", ok, err)
			}
			if diff := cmp.Diff(last, head); diff != "" {
				t.Errorf("Head() (-last appended +head):\n%s", diff)
			}
			if hs, ok := tt.store.(*headStore); ok && hs.heads != tt.wantHeads {
				t.Errorf("HeadReader.Head called %d times, want %d", hs.heads, tt.wantHeads)
			}
		})
	}
}
