package boltstore

import bolt "go.etcd.io/bbolt"

// RevertMetaAfter and DurableTxID expose internals to the external tests.
var RevertMetaAfter = revertMetaAfter

func (s *Store) DurableTxID() uint64 {
	durable, _, _ := s.guard.state()
	return durable
}

// MakeFreePages writes and deletes a large value so that the next commits
// reuse free pages instead of growing the file: an injected fault then hits
// their data write and fsync rather than the file grow.
func (s *Store) MakeFreePages() error {
	pad := []byte("test-pad")
	if err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(metaBucket).Put(pad, make([]byte, 512<<10)) }); err != nil {
		return err
	}
	if err := s.update(func(tx *bolt.Tx) error { return tx.Bucket(metaBucket).Delete(pad) }); err != nil {
		return err
	}
	// The freed pages become reusable at the next write transaction.
	return s.update(func(*bolt.Tx) error { return nil })
}
