package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out.String(), "writd ") || !strings.Contains(out.String(), "go1.") {
		t.Errorf("version: %q", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"version", "-o", "json"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	var v struct {
		Version   string `json:"version"`
		GoVersion string `json:"go_version"`
	}
	if err := json.Unmarshal(out.Bytes(), &v); err != nil || v.Version == "" || v.GoVersion == "" {
		t.Errorf("version -o json: %q (%v)", out.String(), err)
	}
	if err := run(context.Background(), []string{"version", "-o", "yaml"}, &out, &out); err == nil {
		t.Error("version -o yaml: no error")
	}
}
