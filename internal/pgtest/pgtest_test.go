package pgtest_test

import (
	"testing"

	"github.com/writ-dev/writ/internal/pgtest"
)

func TestStart(t *testing.T) {
	t.Parallel()
	s := pgtest.Start(t)
	s.Exec(t, `CREATE ROLE app LOGIN PASSWORD 'app-pass'`)
	tests := []struct {
		name     string
		user     string
		password string
		wantErr  bool
	}{
		{"superuser logs in", s.SuperUser, s.Password, false},
		{"created role logs in", "app", "app-pass", false},
		{"wrong password is refused", "app", "wrong", true},
		{"unknown role is refused", "nobody", "x", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.Login(t.Context(), "postgres", tt.user, tt.password)
			if (err != nil) != tt.wantErr {
				t.Errorf("Login(%s) err = %v, want error %v", tt.user, err, tt.wantErr)
			}
		})
	}
}
