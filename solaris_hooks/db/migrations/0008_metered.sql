-- Metered streams (issue 14): a streamed chat call reserves its prompt and a first chunk of
-- completion, and the stream wrapper grows the reservation before delivering beyond it.
--   * reservations.metered marks such a reservation: when it EXPIRES (the proxy died
--     mid-stream) what it held is charged, not returned, since up to that much may have been
--     delivered; a settle never charges it more than it holds (charged <= reserved).
--   * each growth is one 'extend' ledger row (reserved_delta = the growth), so replaying the
--     ledger still gives reserved_tokens (invariant 2); a call has one row per growth.

ALTER TABLE solaris.reservations ADD COLUMN metered boolean NOT NULL DEFAULT false;

ALTER TABLE solaris.ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE solaris.ledger ADD CONSTRAINT ledger_kind_check
    CHECK (kind IN ('grant', 'credit', 'reserve', 'extend', 'settle', 'release', 'expire', 'adjust'));
-- A call id still appears at most once per kind, except its growths.
DROP INDEX solaris.ledger_call_kind;
CREATE UNIQUE INDEX ledger_call_kind ON solaris.ledger (call_id, kind) WHERE call_id IS NOT NULL AND kind <> 'extend';

-- solaris.reserve, marking the reservation metered when it was made.
CREATE FUNCTION solaris.reserve_metered(
    p_user text, p_call_id text, p_wanted bigint, p_minimum bigint,
    p_default_tokens bigint, p_ttl_s integer, p_model text, p_factor numeric, p_thresholds numeric[] DEFAULT '{}'
) RETURNS TABLE (outcome text, reserved bigint, credited_tokens bigint, debited_tokens bigint,
                 reserved_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    result record;
BEGIN
    SELECT * INTO result FROM solaris.reserve(p_user, p_call_id, p_wanted, p_minimum, p_default_tokens, p_ttl_s,
                                              p_model, p_factor, p_thresholds);
    IF result.outcome = 'reserved' THEN
        UPDATE solaris.reservations r SET metered = true WHERE r.call_id = p_call_id;
    END IF;
    RETURN QUERY SELECT result.outcome, result.reserved, result.credited_tokens, result.debited_tokens,
                        result.reserved_tokens;
END $$;

-- Grow a pending metered reservation by up to p_wanted platform tokens, at least p_minimum,
-- only from what is free (invariant 1), with its
-- 'extend' ledger row, and push its expiry. Returns the tokens added (0: refused).
CREATE FUNCTION solaris.grow_reservation(p_call_id text, p_wanted bigint, p_minimum bigint, p_ttl_s integer)
RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    reservation solaris.reservations;
    amount bigint;
BEGIN
    -- Reservation first, then account: the order solaris.resolve locks them in.
    SELECT * INTO reservation FROM solaris.reservations r
     WHERE r.call_id = p_call_id AND r.state = 'pending' AND r.metered FOR UPDATE;
    IF NOT FOUND OR p_minimum < 1 OR p_wanted < p_minimum THEN
        RETURN 0;
    END IF;
    -- Under the account's row lock, as in solaris.reserve: the growth is what is free,
    -- capped at p_wanted, or nothing when less than p_minimum is free.
    SELECT least(p_wanted, a.credited_tokens - a.debited_tokens - a.reserved_tokens) INTO amount
      FROM solaris.accounts a WHERE a.user_id = reservation.user_id AND a.status = 'active' FOR UPDATE;
    IF amount IS NULL OR amount < p_minimum THEN
        RETURN 0;
    END IF;
    UPDATE solaris.accounts a SET reserved_tokens = a.reserved_tokens + amount, updated_at = now()
     WHERE a.user_id = reservation.user_id;
    UPDATE solaris.reservations r
       SET tokens = r.tokens + amount, expires_at = now() + make_interval(secs => p_ttl_s)
     WHERE r.call_id = p_call_id;
    INSERT INTO solaris.ledger (user_id, kind, tokens, reserved_delta, model, call_id, actor)
    VALUES (reservation.user_id, 'extend', amount, amount, reservation.model, p_call_id, 'solaris');
    RETURN amount;
END $$;

-- As in 0006, plus for metered reservations: a settle charges at most what is held
-- (charged <= reserved), and an expiry CHARGES what was held (the stream may have delivered
-- all of it before its proxy died) instead of returning it.
CREATE OR REPLACE FUNCTION solaris.resolve(
    p_call_id text, p_kind text, p_raw_tokens bigint, p_model text, p_cost_usd numeric,
    p_thresholds numeric[] DEFAULT '{}'
) RETURNS TABLE (state text, charged_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    reservation solaris.reservations;
    new_state text := CASE p_kind WHEN 'settle' THEN 'settled' WHEN 'release' THEN 'released'
                                  WHEN 'expire' THEN 'expired' END;
    charged bigint := 0;
BEGIN
    IF new_state IS NULL THEN
        RAISE EXCEPTION 'unknown resolution kind %', p_kind;
    END IF;
    SELECT * INTO reservation FROM solaris.reservations r WHERE r.call_id = p_call_id FOR UPDATE;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown', 0::bigint;
        RETURN;
    END IF;
    IF reservation.state IN ('expired', 'released') AND p_kind = 'settle' THEN
        PERFORM 1 FROM solaris.accounts a WHERE a.user_id = reservation.user_id FOR UPDATE;
        RETURN QUERY SELECT * FROM solaris.settle_late(
            p_call_id, reservation.user_id, p_raw_tokens, coalesce(p_model, reservation.model), reservation.factor,
            p_cost_usd, 'late settle: the call outlived its reservation', p_thresholds);
        RETURN;
    END IF;
    IF reservation.state <> 'pending' THEN
        RETURN QUERY SELECT reservation.state, 0::bigint;
        RETURN;
    END IF;
    IF p_kind = 'settle' THEN
        charged := ceil(greatest(p_raw_tokens, 0) * reservation.factor);
        IF reservation.metered THEN
            charged := least(charged, reservation.tokens);
        END IF;
    ELSIF p_kind = 'expire' AND reservation.metered THEN
        charged := reservation.tokens;
    END IF;
    UPDATE solaris.reservations r SET state = new_state, resolved_at = now() WHERE r.call_id = p_call_id;
    UPDATE solaris.accounts a
       SET reserved_tokens = a.reserved_tokens - reservation.tokens,
           debited_tokens = a.debited_tokens + charged,
           updated_at = now()
     WHERE a.user_id = reservation.user_id;
    INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, reserved_delta, raw_tokens, model,
                                cost_usd, call_id, actor, reason)
    VALUES (reservation.user_id, p_kind, CASE WHEN p_kind = 'release' THEN reservation.tokens
                                              WHEN p_kind = 'expire' AND NOT reservation.metered THEN reservation.tokens
                                              ELSE charged END,
            charged, -reservation.tokens, p_raw_tokens, coalesce(p_model, reservation.model), p_cost_usd,
            p_call_id, 'solaris',
            CASE WHEN p_kind = 'expire' AND reservation.metered
                 THEN 'metered stream expired: what it held is charged' END);
    IF charged > 0 THEN
        PERFORM solaris.raise_usage_alert(reservation.user_id, p_thresholds, false);
    END IF;
    RETURN QUERY SELECT new_state, charged;
END $$;

-- As in 0006, except that a metered reservation whose expiry charged what it held owes
-- nothing more: its stream never delivered beyond what it held.
CREATE OR REPLACE FUNCTION solaris.settle_late(
    p_call_id text, p_user text, p_raw_tokens bigint, p_model text, p_factor numeric, p_cost_usd numeric,
    p_reason text, p_thresholds numeric[]
) RETURNS TABLE (state text, charged_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    charged bigint := ceil(greatest(p_raw_tokens, 0) * p_factor);
BEGIN
    IF EXISTS (SELECT 1 FROM solaris.ledger l WHERE l.call_id = p_call_id AND l.kind = 'settle') THEN
        RETURN QUERY SELECT 'settled', 0::bigint;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM solaris.reservations r
                WHERE r.call_id = p_call_id AND r.metered AND r.state = 'expired') THEN
        RETURN QUERY SELECT 'expired', 0::bigint;
        RETURN;
    END IF;
    UPDATE solaris.accounts a SET debited_tokens = a.debited_tokens + charged, updated_at = now()
     WHERE a.user_id = p_user;
    INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, raw_tokens, model, cost_usd, call_id, actor,
                                reason)
    VALUES (p_user, 'settle', charged, charged, p_raw_tokens, p_model, p_cost_usd, p_call_id, 'solaris', p_reason);
    IF charged > 0 THEN
        PERFORM solaris.raise_usage_alert(p_user, p_thresholds, false);
    END IF;
    RETURN QUERY SELECT 'settled', charged;
END $$;
