package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// profile is what `writ login` remembers for later commands: where the admin
// API is, how to recognise the broker, and the person's ID token. It is
// stored with mode 0600.
type profile struct {
	Admin    string `json:"admin"`
	BrokerID string `json:"broker_id"`
	Bundle   string `json:"bundle"`
	Token    string `json:"token"`
}

var profileName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]{0,63}$`)

func profilePath(name string) (string, error) {
	if !profileName.MatchString(name) {
		return "", fmt.Errorf("--profile %q: use letters, digits, '.', '-' and '_': %w", name, errUsage)
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("find config dir: %w", err)
	}
	return filepath.Join(dir, "writ", "profiles", name+".json"), nil
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
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
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
