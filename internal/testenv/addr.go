package testenv

import (
	"encoding/json"
	"fmt"
	"testing"
)

// LoggedAddr reads a listen address that writd logged with slog's JSON
// handler: a string, or a marshaled *net.TCPAddr ({"IP":…,"Port":…}). It
// fails the test if raw is neither.
func LoggedAddr(t testing.TB, raw json.RawMessage) string {
	t.Helper()
	var s string
	if json.Unmarshal(raw, &s) == nil && s != "" {
		return s
	}
	var tcp struct {
		IP   string
		Port int
	}
	if err := json.Unmarshal(raw, &tcp); err != nil || tcp.Port == 0 {
		t.Fatalf("writd logged address %s: %v", raw, err)
	}
	return fmt.Sprintf("%s:%d", tcp.IP, tcp.Port)
}
