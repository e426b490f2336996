//go:build race

package boltstore_test

// raceEnabled: the race detector turns on checkptr, which aborts the process
// (not a recoverable panic) when bbolt's pointer arithmetic meets a
// scribbled page, so damage cases that reach page contents run only
// without -race.
const raceEnabled = true
