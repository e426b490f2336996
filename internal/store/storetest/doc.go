// Package storetest is the behavioural contract every approval.Store
// backend must pass: boltstore runs it always, etcdstore when an etcd is
// available. It is a test package: import it only from _test.go files.
//
// A backend's test calls
//
//	storetest.RunApprovalSuite(t, func(t *testing.T) approval.Store {
//		return openEmptyStore(t) // closed by t.Cleanup
//	})
//
// and, if its data outlive the Store value, RunApprovalReopen. A backend
// that also implements approval.BreakGlassStore runs RunBreakGlassSuite the
// same way, and one that implements txn.Committer runs RunTxSuite.
package storetest
