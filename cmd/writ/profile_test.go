package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// Paths in a profile are stored absolute, so that a profile saved with
// `--bundle ./writ-dev/bundle.pem` works from any directory.
func TestSaveProfile_StoresAbsolutePaths(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	dir := t.TempDir()
	t.Chdir(dir)
	if _, err := saveProfile("rel", profile{Bundle: "./writ-dev/bundle.pem", Token: "t"}); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	p, err := loadProfile("rel")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "writ-dev", "bundle.pem"); p.Bundle != want {
		t.Errorf("bundle %q, want %q", p.Bundle, want)
	}
	path, err := profilePath("rel")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("profile file: %v, %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("profile dir: %v, %v", fi.Mode(), err)
	}
}

func TestListProfiles_Status(t *testing.T) {
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	rows, err := listProfiles("default", now)
	if err != nil || len(rows) != 0 {
		t.Fatalf("no profiles yet: %v, %v", rows, err)
	}
	for name, p := range map[string]profile{
		"valid":      {Token: "t", Expiry: now.Add(time.Minute)},
		"expired":    {Token: "t", Expiry: now.Add(-time.Minute)},
		"renewable":  {Token: "t", Expiry: now.Add(-time.Minute), RefreshToken: "r"},
		"logged-out": {Admin: "a:1"},
		"token-file": {Token: "t"},
		"default":    {Token: "t", Expiry: now.Add(time.Hour)},
	} {
		if _, err := saveProfile(name, p); err != nil {
			t.Fatal(err)
		}
	}
	rows, err = listProfiles("default", now)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"default": "valid", "expired": "expired", "logged-out": "logged out",
		"renewable": "expired, renews on next use", "token-file": "signed in", "valid": "valid"}
	if len(rows) != len(want) {
		t.Fatalf("%d rows, want %d", len(rows), len(want))
	}
	for _, r := range rows {
		if r.Status != want[r.Name] || r.Current != (r.Name == "default") {
			t.Errorf("%s: status %q current %t, want %q", r.Name, r.Status, r.Current, want[r.Name])
		}
	}
}
