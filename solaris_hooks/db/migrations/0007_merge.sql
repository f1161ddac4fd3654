-- One person, one account (docs/architecture.md invariant 9). Identities are normalised before they
-- reach the ledger now; accounts made before that keep their ids (rewriting them could
-- collide) and admins merge them: `solaris users merge FROM INTO`, POST /solaris/users/{id}/merge.

-- Where merged ids went, so an admin who types an old id finds the account it is part of.
CREATE TABLE solaris.merged_accounts (
    from_user_id text PRIMARY KEY CHECK (length(from_user_id) BETWEEN 1 AND 255),
    into_user_id text NOT NULL REFERENCES solaris.accounts (user_id),
    actor        text NOT NULL,
    merged_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX merged_accounts_into ON solaris.merged_accounts (into_user_id);

-- Merge account p_from into p_into, in the caller's transaction: every row that references
-- p_from (ledger, reservations pending or not, alerts, and any table a later migration adds
-- with a foreign key to accounts) is re-attributed to p_into, the balances are added, and
-- p_from is deleted. Replaying the ledger still gives every balance (invariant 2), and each
-- pending reservation is still counted once in reserved_tokens. Returns how many rows moved.
--
-- Locks: p_from's reservations first, then both accounts in id order: the order
-- solaris.resolve takes (reservation, then account), so a settle running meanwhile waits
-- instead of deadlocking. The audit trail is not rewritten: it records what was done to
-- p_from under that id, and the merge's own audit row links the two.
CREATE FUNCTION solaris.merge_accounts(p_from text, p_into text, p_actor text, p_thresholds numeric[] DEFAULT '{}')
RETURNS TABLE (ledger_rows bigint, reservations bigint, pending_reservations bigint, alerts bigint,
               other_rows bigint)
LANGUAGE plpgsql AS $$
DECLARE
    source solaris.accounts;
    target solaris.accounts;
    moved_ledger bigint;
    moved_reservations bigint;
    moved_pending bigint;
    moved_alerts bigint;
    moved_other bigint := 0;
    moved bigint;
    cycle_shift integer;
    reference record;
BEGIN
    IF p_from = p_into THEN
        RAISE EXCEPTION 'cannot merge an account into itself' USING ERRCODE = '22023';
    END IF;
    SELECT count(*), count(*) FILTER (WHERE r.state = 'pending') INTO moved_reservations, moved_pending
      FROM (SELECT r.state FROM solaris.reservations r WHERE r.user_id = p_from FOR UPDATE) r;
    PERFORM 1 FROM solaris.accounts a WHERE a.user_id IN (p_from, p_into) ORDER BY a.user_id FOR UPDATE;
    SELECT * INTO source FROM solaris.accounts a WHERE a.user_id = p_from;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no account %', p_from USING ERRCODE = 'P0002';
    END IF;
    SELECT * INTO target FROM solaris.accounts a WHERE a.user_id = p_into;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'no account %', p_into USING ERRCODE = 'P0002';
    END IF;

    -- Alerts: one usage alert per (user, period, threshold, alert_cycle) must stay unique.
    -- p_from's cycles are shifted below every cycle p_into has or will use (live cycles
    -- count up from 0), keeping their order; they are history, never raised again.
    SELECT least(coalesce(min(al.alert_cycle), 0), 0) - 1 - coalesce(
               (SELECT max(f.alert_cycle) FROM solaris.alerts f WHERE f.user_id = p_from), 0)
      INTO cycle_shift
      FROM solaris.alerts al WHERE al.user_id = p_into;
    UPDATE solaris.alerts al SET user_id = p_into, alert_cycle = al.alert_cycle + cycle_shift
     WHERE al.user_id = p_from;
    GET DIAGNOSTICS moved_alerts = ROW_COUNT;

    -- Every other reference, found in the catalog so a table added later is not forgotten.
    FOR reference IN
        SELECT c.conrelid::regclass AS tbl, at.attname AS col
          FROM pg_constraint c
          JOIN pg_attribute at ON at.attrelid = c.conrelid AND at.attnum = c.conkey[1]
         WHERE c.contype = 'f' AND c.confrelid = 'solaris.accounts'::regclass AND cardinality(c.conkey) = 1
           AND c.conrelid <> 'solaris.alerts'::regclass
         ORDER BY c.conrelid::regclass::text, at.attname
    LOOP
        EXECUTE format('UPDATE %s SET %I = $1 WHERE %I = $2', reference.tbl, reference.col, reference.col)
          USING p_into, p_from;
        GET DIAGNOSTICS moved = ROW_COUNT;
        IF reference.tbl = 'solaris.ledger'::regclass THEN
            moved_ledger := moved;
        ELSIF reference.tbl <> 'solaris.reservations'::regclass THEN
            moved_other := moved_other + moved;
        END IF;
    END LOOP;

    -- The stricter status wins: merging must not unblock anyone.
    UPDATE solaris.accounts a
       SET credited_tokens = a.credited_tokens + source.credited_tokens,
           debited_tokens = a.debited_tokens + source.debited_tokens,
           reserved_tokens = a.reserved_tokens + source.reserved_tokens,
           email = coalesce(a.email, source.email),
           name = coalesce(a.name, source.name),
           locale = coalesce(a.locale, source.locale),
           status = CASE WHEN 'disabled' IN (a.status, source.status) THEN 'disabled'
                         WHEN 'blocked' IN (a.status, source.status) THEN 'blocked'
                         ELSE 'active' END,
           created_at = least(a.created_at, source.created_at),
           updated_at = now()
     WHERE a.user_id = p_into;
    DELETE FROM solaris.accounts a WHERE a.user_id = p_from;
    INSERT INTO solaris.merged_accounts (from_user_id, into_user_id, actor) VALUES (p_from, p_into, p_actor)
        ON CONFLICT (from_user_id) DO UPDATE SET into_user_id = excluded.into_user_id, actor = excluded.actor,
                                                 merged_at = now();
    -- The sums may cross a threshold, or bring usage back under one.
    PERFORM solaris.rearm_usage_alerts(p_into, p_thresholds);
    PERFORM solaris.raise_usage_alert(p_into, p_thresholds, false);
    RETURN QUERY SELECT coalesce(moved_ledger, 0), moved_reservations, moved_pending, moved_alerts, moved_other;
END $$;
