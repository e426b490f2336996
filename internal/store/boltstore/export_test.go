package boltstore

// RevertMetaAfter and DurableTxID expose internals to the external tests.
var RevertMetaAfter = revertMetaAfter

func (s *Store) DurableTxID() uint64 {
	durable, _, _ := s.guard.state()
	return durable
}
