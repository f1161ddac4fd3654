"""The test harness: a fake model provider, real processes, waits, the ledger check and the
names every kind of test shares."""
