// Package crashtest holds Writ's crash harness (reliability cases T1, T2
// and T41): its tests build writd and writ, run the broker on a data
// directory under concurrent load, kill it with SIGKILL at random moments,
// start it again, and check what survived: every credential a client
// received is in the ledger, the ledger verifies, every credential minted
// but never recorded was revoked or is bounded by its TTL, and decisions
// and their consequences stayed together.
//
// The number of kill cycles is WRIT_CRASH_CYCLES (default 5). Everything
// runs on loopback; Vault (and PostgreSQL for leases) come from the usual
// harnesses and are required under WRIT_INTEGRATION=require.
package crashtest
