"""The test harness: a fake model provider, real processes, waits and the ledger check."""
