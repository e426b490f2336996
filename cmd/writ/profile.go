package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// profile is what `writ login` remembers for later commands: where the admin
// API is, how to recognise the broker, and the person's ID token. After a
// sign-in with the identity provider it also holds the refresh token and what
// is needed to use it. It is stored with mode 0600 in a 0700 directory; paths
// in it are absolute.
type profile struct {
	Admin    string `json:"admin"`
	BrokerID string `json:"broker_id"`
	Bundle   string `json:"bundle"`
	Token    string `json:"token"`

	// Principal is who the broker saw at login, for `writ profiles`.
	Principal string `json:"principal,omitempty"`
	// Expiry is when Token expires.
	Expiry time.Time `json:"expiry,omitzero"`
	// Issuer, ClientID and Scopes are how the person signed in.
	Issuer   string   `json:"issuer,omitempty"`
	ClientID string   `json:"client_id,omitempty"`
	Scopes   []string `json:"scopes,omitempty"`
	// RefreshToken renews Token before it expires.
	RefreshToken string `json:"refresh_token,omitempty"`
}

var profileName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

func profilePath(name string) (string, error) {
	if !profileName.MatchString(name) {
		return "", fmt.Errorf("--profile %q: use letters, digits, '.', '-' and '_': %w", name, errUsage)
	}
	dir, err := profileDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, name+".json"), nil
}

// profileDir is where profiles are kept: writ/profiles in the user's config
// directory.
func profileDir() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find config dir: %w", err)
	}
	return filepath.Join(dir, "writ", "profiles"), nil
}

func loadProfile(name string) (profile, error) {
	path, err := profilePath(name)
	if err != nil {
		return profile{}, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return profile{}, nil
	}
	if err != nil {
		return profile{}, err
	}
	var p profile
	if err := json.Unmarshal(b, &p); err != nil {
		return profile{}, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func saveProfile(name string, p profile) (string, error) {
	path, err := profilePath(name)
	if err != nil {
		return "", err
	}
	if p.Bundle != "" {
		// Stored absolute: the profile is used from any directory.
		if p.Bundle, err = filepath.Abs(p.Bundle); err != nil {
			return "", fmt.Errorf("--bundle: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	if err := os.Chmod(filepath.Dir(path), 0o700); err != nil {
		return "", err
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return "", err
	}
	return path, os.Rename(tmp, path)
}
