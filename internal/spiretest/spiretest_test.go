package spiretest_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/writ-dev/writ/internal/spiretest"
)

// TestStart runs a real server and agent, registers the test process by
// its uid, and checks the Workload API serves the SVID with the configured
// TTL, that the bundle is served, and that deleting the entry stops it.
func TestStart(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Minute
	s := spiretest.Start(t, spiretest.Options{TrustDomain: "spiretest.example", X509SVIDTTL: ttl})
	if got := s.TrustDomain().Name(); got != "spiretest.example" {
		t.Errorf("TrustDomain() = %q, want spiretest.example", got)
	}
	if sock := s.WorkloadSocket(); !strings.HasPrefix(sock, "unix:///") || len(sock) >= 104 {
		t.Errorf("WorkloadSocket() = %q, want a short unix:/// address", sock)
	}

	// Workloads under any uid can reach the agent.
	path := strings.TrimPrefix(s.WorkloadSocket(), "unix://")
	for p := path; p != "/tmp" && p != "/"; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if want := os.FileMode(0o005); p != path && fi.Mode().Perm()&want != want {
			t.Errorf("%s has mode %v: other uids cannot reach the agent socket", p, fi.Mode())
		}
		if p == path && fi.Mode().Perm() != 0o777 {
			t.Errorf("agent socket has mode %v, want 0777", fi.Mode())
		}
	}

	id := s.ID(t, "/me")
	entry := s.CreateEntry(t, id.String(), fmt.Sprintf("unix:uid:%d", os.Getuid()))
	if entry == "" {
		t.Fatal("CreateEntry() returned no entry ID")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s.WaitForSVID(t, ctx, id.String())

	svid, err := workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(s.WorkloadSocket()))
	if err != nil {
		t.Fatalf("FetchX509SVID() err = %v", err)
	}
	if svid.ID != id {
		t.Errorf("FetchX509SVID() ID = %s, want %s", svid.ID, id)
	}
	leaf := svid.Certificates[0]
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < ttl-time.Minute || got > ttl+time.Minute {
		t.Errorf("SVID lifetime = %s, want about %s", got, ttl)
	}
	if b := s.BundleJSON(t); !strings.Contains(string(b), `"jwt-svid"`) || !strings.Contains(string(b), `"x509-svid"`) {
		t.Errorf("BundleJSON() = %s, want X.509 and JWT authorities", b)
	}

	s.DeleteEntry(t, entry)
	for {
		fctx, fcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := workloadapi.FetchX509SVIDs(fctx, workloadapi.WithAddr(s.WorkloadSocket()))
		fcancel()
		if err != nil {
			break // no identity for this process any more
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the Workload API still serves %s after DeleteEntry", id)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func TestDir_Env(t *testing.T) {
	dir := spiretest.Dir(t) // skips (or fails under require) without SPIRE
	t.Setenv(spiretest.EnvDir, dir)
	if got := spiretest.Dir(t); got != dir {
		t.Errorf("Dir() = %q, want %q from %s", got, dir, spiretest.EnvDir)
	}
}
