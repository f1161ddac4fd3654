-- Leases (issue 16): a proxy process holds a slice of a user's allowance and reserves calls
-- from it in memory, with no round trip on the request path; their settles are written in
-- batches. A lease is a pending reservation like any other (so invariant 1 holds across
-- replicas: credited >= debited + every reservation and lease):
--   * reservations.lease_owner names the process holding it (NULL: a per-call reservation).
--     Its call_id is the lease id; its tokens shrink as the calls it covered are settled.
--   * taking or topping up a lease is one 'reserve' / 'extend' ledger row of the lease id;
--     each call settled from it is one 'settle' row of the CALL's id, whose reserved_delta is
--     what the lease gave up for it and whose lease_id names the lease; returning it is one
--     'release' row, expiring it (its process died) one 'expire' row, as for any reservation.
--   * an expired lease returns what it still holds: the calls it covered that succeeded are
--     in their process's spool, charged by the replay (late, from the account, if the lease
--     is gone by then); calls that were still running died with their process and delivered
--     nothing (leases cover only calls whose answer arrives whole).

ALTER TABLE solaris.reservations ADD COLUMN lease_owner text CHECK (length(lease_owner) <= 200);
ALTER TABLE solaris.ledger ADD COLUMN lease_id text;

-- Take a lease, or top one up: up to p_wanted platform tokens and at most p_share of what the
-- user has free (the rest stays for calls of other processes and for streams), at least p_minimum.
-- outcome: 'reserved' | 'exhausted' (less than p_minimum could be leased) | 'blocked' |
--          'disabled' | 'lost' (a top-up of a lease that is no longer pending).
CREATE FUNCTION solaris.take_lease(
    p_user text, p_lease_id text, p_owner text, p_wanted bigint, p_minimum bigint, p_share numeric,
    p_default_tokens bigint, p_ttl_s integer
) RETURNS TABLE (outcome text, reserved bigint, credited_tokens bigint, debited_tokens bigint,
                 reserved_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    lease solaris.reservations;
    amount bigint;
BEGIN
    PERFORM solaris.provision(p_user, p_default_tokens);
    -- Lease first, then account: the order solaris.resolve locks them in.
    SELECT * INTO lease FROM solaris.reservations r WHERE r.call_id = p_lease_id FOR UPDATE;
    SELECT * INTO account FROM solaris.accounts a WHERE a.user_id = p_user FOR UPDATE;
    IF lease.call_id IS NOT NULL AND (lease.state <> 'pending' OR lease.user_id <> p_user) THEN
        RETURN QUERY SELECT 'lost', 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
    IF account.status <> 'active' THEN
        RETURN QUERY SELECT account.status, 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
    amount := least(p_wanted,
                    floor((account.credited_tokens - account.debited_tokens - account.reserved_tokens) * p_share));
    IF amount < greatest(p_minimum, 1) THEN
        RETURN QUERY SELECT 'exhausted', 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
    UPDATE solaris.accounts a SET reserved_tokens = a.reserved_tokens + amount, updated_at = now()
     WHERE a.user_id = p_user
    RETURNING * INTO account;
    IF lease.call_id IS NULL THEN
        INSERT INTO solaris.reservations (call_id, user_id, tokens, model, factor, expires_at, lease_owner)
        VALUES (p_lease_id, p_user, amount, NULL, 1, now() + make_interval(secs => p_ttl_s), p_owner);
        INSERT INTO solaris.ledger (user_id, kind, tokens, reserved_delta, call_id, lease_id, actor, reason)
        VALUES (p_user, 'reserve', amount, amount, p_lease_id, p_lease_id, 'solaris', 'lease taken by ' || p_owner);
    ELSE
        UPDATE solaris.reservations r
           SET tokens = r.tokens + amount, expires_at = now() + make_interval(secs => p_ttl_s)
         WHERE r.call_id = p_lease_id;
        INSERT INTO solaris.ledger (user_id, kind, tokens, reserved_delta, call_id, lease_id, actor, reason)
        VALUES (p_user, 'extend', amount, amount, p_lease_id, p_lease_id, 'solaris', 'lease topped up');
    END IF;
    RETURN QUERY SELECT 'reserved', amount, account.credited_tokens, account.debited_tokens,
                        account.reserved_tokens;
END $$;

-- Settle a batch of calls covered by leases, in one transaction and one statement: one
-- 'settle' ledger row per call (idempotent per call id: a call settled before, by an earlier
-- batch or a replay, changes nothing), one update per lease and per account. Each call is
-- charged ceil(raw tokens x its factor); its lease gives up what it still holds for it, in
-- the batch's order, and a charge beyond that (a lease returned or expired meanwhile) is
-- charged late, from the account, as solaris.settle_late does. Leases then accounts are
-- locked in key order, so two batches (two replicas) never deadlock. Every lease still
-- pending is renewed for p_ttl_s: its owner is alive. Returns each lease the batch named:
-- its state and tokens now, its account's status and balances, and what its calls were charged.
CREATE FUNCTION solaris.settle_leased(p_calls jsonb, p_ttl_s integer, p_thresholds numeric[] DEFAULT '{}')
RETURNS TABLE (lease_id text, lease_state text, lease_tokens bigint, status text, credited_tokens bigint,
               debited_tokens bigint, reserved_tokens bigint, charged_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    owner record;
    lease solaris.reservations;
    call record;
    held_lease_id text;
    charged bigint;
    from_lease bigint;
    lease_left bigint;
    lease_given bigint;
    account_charged bigint;
    account_given bigint;
    account solaris.accounts;
BEGIN
    FOR owner IN
        SELECT r.user_id, array_agg(DISTINCT r.call_id ORDER BY r.call_id) AS lease_ids
          FROM solaris.reservations r
         WHERE r.call_id = ANY (ARRAY(SELECT DISTINCT c.lease_id FROM jsonb_to_recordset(p_calls) AS c(lease_id text)))
         GROUP BY r.user_id
         ORDER BY r.user_id
    LOOP
        PERFORM 1 FROM solaris.reservations r WHERE r.call_id = ANY (owner.lease_ids) ORDER BY r.call_id FOR UPDATE;
        PERFORM 1 FROM solaris.accounts a WHERE a.user_id = owner.user_id FOR UPDATE;
        account_charged := 0;
        account_given := 0;
        FOREACH held_lease_id IN ARRAY owner.lease_ids LOOP
            SELECT * INTO lease FROM solaris.reservations r WHERE r.call_id = held_lease_id;
            lease_left := CASE WHEN lease.state = 'pending' THEN lease.tokens ELSE 0 END;
            lease_given := 0;
            FOR call IN
                SELECT c.* FROM jsonb_to_recordset(p_calls)
                           AS c(call_id text, lease_id text, raw_tokens bigint, factor numeric, model text,
                                cost_usd numeric)
                 WHERE c.lease_id = held_lease_id
            LOOP
                charged := ceil(greatest(call.raw_tokens, 0) * call.factor);
                from_lease := least(charged, lease_left);
                INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, reserved_delta, raw_tokens, model,
                                            cost_usd, call_id, lease_id, actor, reason)
                VALUES (lease.user_id, 'settle', charged, charged, -from_lease, call.raw_tokens, call.model,
                        call.cost_usd, call.call_id, held_lease_id, 'solaris',
                        CASE WHEN from_lease < charged THEN 'late settle: its lease had been returned' END)
                ON CONFLICT (call_id, kind) WHERE call_id IS NOT NULL AND kind <> 'extend' DO NOTHING;
                IF FOUND THEN
                    lease_left := lease_left - from_lease;
                    lease_given := lease_given + from_lease;
                    account_charged := account_charged + charged;
                END IF;
            END LOOP;
            IF lease.state = 'pending' THEN
                UPDATE solaris.reservations r
                   SET tokens = r.tokens - lease_given, expires_at = now() + make_interval(secs => p_ttl_s)
                 WHERE r.call_id = held_lease_id;
            END IF;
            account_given := account_given + lease_given;
        END LOOP;
        UPDATE solaris.accounts a
           SET reserved_tokens = a.reserved_tokens - account_given,
               debited_tokens = a.debited_tokens + account_charged,
               updated_at = now()
         WHERE a.user_id = owner.user_id
        RETURNING * INTO account;
        IF account_charged > 0 THEN
            PERFORM solaris.raise_usage_alert(owner.user_id, p_thresholds, false);
        END IF;
        RETURN QUERY
            SELECT r.call_id, r.state, r.tokens, account.status, account.credited_tokens, account.debited_tokens,
                   account.reserved_tokens, account_charged
              FROM solaris.reservations r WHERE r.call_id = ANY (owner.lease_ids) ORDER BY r.call_id;
    END LOOP;
END $$;

-- A call id of a leased call that reaches solaris.settle_spooled or solaris.resolve has no
-- reservation row: the spool replay of a leased call goes through solaris.settle_leased.
