//go:build !race

package boltstore_test

// raceEnabled: see race_on_test.go.
const raceEnabled = false
