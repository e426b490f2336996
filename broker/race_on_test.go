//go:build race

package broker_test

// raceEnabled scales the floods of T39 down under the race detector, which
// slows every call several times over.
const raceEnabled = true
