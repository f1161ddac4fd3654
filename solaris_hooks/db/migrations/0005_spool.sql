-- Usage that waited in a proxy's spool while Postgres was unreachable (solaris_hooks/spool.py),
-- charged once the database is back. A replay interrupted by a crash runs again, so this
-- is idempotent per call id:
--   reservation pending          settled exactly as solaris.resolve would, at its factor
--   reservation settled          nothing: the first write did commit before the connection broke
--   reservation released         nothing: the call was reported failed (same as a late settle)
--   reservation expired          one 'settle' row of its own (a late settle: the sweeper returned
--                                the reservation during the outage), at the reservation's factor
--   never reserved               one 'settle' row of its own, at p_factor, to p_user, provisioned
--   (fail_mode: open)            with the default allowance like solaris.reserve does
--   a 'settle' row exists        nothing (replayed before; the unique (call_id, kind) index
--                                also stops two replays racing on one call)
-- A charge of its own was never reserved, so it can take debited past credited. That is
-- the accepted price of fail_mode: open and of long outages: the ledger records what the
-- provider really served, replays to the balances as always, `remaining` goes negative,
-- and the user's next call is refused until credits or a refill. Usage alerts are raised
-- as for any settle.
CREATE FUNCTION solaris.settle_spooled(
    p_call_id text, p_user text, p_raw_tokens bigint, p_model text, p_factor numeric, p_cost_usd numeric,
    p_default_tokens bigint, p_spooled_at text, p_thresholds numeric[] DEFAULT '{}'
) RETURNS TABLE (state text, charged_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    reservation solaris.reservations;
    was_reserved boolean;
    target text := p_user;
    rate numeric := p_factor;
    charged bigint;
BEGIN
    SELECT * INTO reservation FROM solaris.reservations r WHERE r.call_id = p_call_id FOR UPDATE;
    was_reserved := FOUND;
    IF was_reserved THEN
        IF reservation.state = 'pending' THEN
            RETURN QUERY SELECT * FROM solaris.resolve(p_call_id, 'settle', p_raw_tokens, p_model, p_cost_usd,
                                                       p_thresholds);
            RETURN;
        END IF;
        IF reservation.state IN ('settled', 'released') THEN
            RETURN QUERY SELECT reservation.state, 0::bigint;
            RETURN;
        END IF;
        target := reservation.user_id;
        rate := reservation.factor;
    END IF;
    IF EXISTS (SELECT 1 FROM solaris.ledger l WHERE l.call_id = p_call_id AND l.kind = 'settle') THEN
        RETURN QUERY SELECT 'settled', 0::bigint;
        RETURN;
    END IF;
    IF target IS NULL OR rate IS NULL THEN
        -- A failed settle whose reservation is gone (pruned after a very long outage): we
        -- cannot tell whom to charge.
        RETURN QUERY SELECT 'unknown', 0::bigint;
        RETURN;
    END IF;
    PERFORM solaris.provision(target, p_default_tokens);
    charged := ceil(greatest(p_raw_tokens, 0) * rate);
    UPDATE solaris.accounts a SET debited_tokens = a.debited_tokens + charged, updated_at = now()
     WHERE a.user_id = target;
    INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, raw_tokens, model, cost_usd, call_id, actor,
                                reason)
    VALUES (target, 'settle', charged, charged, p_raw_tokens, coalesce(p_model, reservation.model), p_cost_usd,
            p_call_id, 'solaris',
            CASE WHEN was_reserved THEN 'late settle: the reservation expired while the database was unreachable'
                 ELSE 'unmetered call: the database was unreachable (fail_mode: open)' END
            || ', spooled at ' || coalesce(p_spooled_at, 'an unknown time'));
    IF charged > 0 THEN
        PERFORM solaris.raise_usage_alert(target, p_thresholds, false);
    END IF;
    RETURN QUERY SELECT 'settled', charged;
END $$;
