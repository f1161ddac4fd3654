-- Resolved reservations are kept only as long as a late or duplicated LiteLLM event
-- could still arrive for them; the ledger keeps the history for good. A BRIN index on
-- the insertion time lets the sweeper find old rows without scanning the table, and
-- costs almost nothing to maintain on an append-mostly table.
CREATE INDEX reservations_created_at ON solaris.reservations USING brin (created_at);
