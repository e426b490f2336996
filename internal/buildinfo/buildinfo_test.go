package buildinfo

import (
	"runtime/debug"
	"testing"
	"time"
)

func TestFromBuildInfo(t *testing.T) {
	t.Parallel()
	when := time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		bi       debug.BuildInfo
		wantVer  string
		wantLine string
	}{
		{name: "release", bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"}},
			wantVer: "v1.2.3", wantLine: "v1.2.3 go1.26.8"},
		{name: "working tree with VCS stamp", bi: debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.time", Value: when.Format(time.RFC3339)}, {Key: "vcs.modified", Value: "true"}}},
			wantVer: "(devel)", wantLine: "(devel) (0123456789ab, modified) go1.26.8"},
		{name: "no version", bi: debug.BuildInfo{GoVersion: "go1.26.8"}, wantVer: "(devel)", wantLine: "(devel) go1.26.8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := fromBuildInfo(&tt.bi)
			if got.Version != tt.wantVer || got.String() != tt.wantLine {
				t.Errorf("got %q / %q, want %q / %q", got.Version, got.String(), tt.wantVer, tt.wantLine)
			}
			if tt.bi.Settings != nil && (got.Time == nil || !got.Time.Equal(when) || !got.Modified) {
				t.Errorf("VCS settings not read: %+v", got)
			}
		})
	}
}
