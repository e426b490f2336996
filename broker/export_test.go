package broker

import "github.com/writ-dev/writ/approval"

// SetCrashAfterMint installs the crash hook: when f returns true the
// pipeline stops right after the issuer minted, recording nothing and
// revoking nothing, as a kill -9 at that moment would.
func SetCrashAfterMint(s *Server, f func(approval.Grant) bool) { s.afterMint = f }
