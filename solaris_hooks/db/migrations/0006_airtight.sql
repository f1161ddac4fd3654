-- Airtight enforcement (docs/architecture.md invariants 6 to 8): no answer of reserve but a fresh
-- reservation lets a call through, a free call needs an allowance left, every served call
-- is charged (late results too), open streams keep their reservation, and the prompt margin
-- per model learns from what providers report.

-- How much more than our estimate a model's provider counts a prompt, as two running
-- maxima learned from what providers report (solaris_hooks/margins.py): `margin`, the
-- ratio reported ÷ estimated, from prompts of at least p_ratio_sample_min tokens (a
-- tokenizer that counts more scales with the text), and `excess_tokens`, reported −
-- estimated, from shorter ones (a provider's fixed framing would make a huge ratio out of a
-- short prompt). Reservations bound a prompt by max(estimate × margin, estimate + excess),
-- so a provider counting differently cannot push a call past what was reserved twice.
-- Both only ever grow; replicas share them.
CREATE TABLE solaris.model_margins (
    model          text PRIMARY KEY CHECK (length(model) BETWEEN 1 AND 255),
    margin         numeric NOT NULL DEFAULT 1 CHECK (margin >= 1),
    excess_tokens  bigint NOT NULL DEFAULT 0 CHECK (excess_tokens >= 0),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION solaris.learn_margin(p_model text, p_reported bigint, p_estimated bigint, p_ratio_sample_min bigint)
RETURNS TABLE (margin numeric, excess_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    -- Rounded up, so the stored margin is never below the ratio seen.
    ratio numeric := CASE WHEN p_estimated >= p_ratio_sample_min
                          THEN greatest(ceil(p_reported::numeric / greatest(p_estimated, 1) * 10000) / 10000, 1)
                          ELSE 1 END;
    excess bigint := CASE WHEN p_estimated < p_ratio_sample_min THEN greatest(p_reported - p_estimated, 0) ELSE 0 END;
BEGIN
    INSERT INTO solaris.model_margins AS m (model, margin, excess_tokens) VALUES (p_model, ratio, excess)
    ON CONFLICT (model) DO UPDATE
       SET margin = greatest(m.margin, excluded.margin),
           excess_tokens = greatest(m.excess_tokens, excluded.excess_tokens), updated_at = now();
    RETURN QUERY SELECT m.margin, m.excess_tokens FROM solaris.model_margins m WHERE m.model = p_model;
END $$;

-- A free call (p_wanted = 0: a LibreChat title with title_calls: free) is recorded with 0
-- tokens, but only for a user who still has some allowance: a used-up user gets nothing free.
CREATE OR REPLACE FUNCTION solaris.reserve(
    p_user text, p_call_id text, p_wanted bigint, p_minimum bigint,
    p_default_tokens bigint, p_ttl_s integer, p_model text, p_factor numeric, p_thresholds numeric[] DEFAULT '{}'
) RETURNS TABLE (outcome text, reserved bigint, credited_tokens bigint, debited_tokens bigint,
                 reserved_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    existing bigint;
    amount bigint;
    remaining bigint;
BEGIN
    PERFORM solaris.provision(p_user, p_default_tokens);
    -- The row lock orders concurrent reservations of one user: each sees the last one's result.
    SELECT * INTO account FROM solaris.accounts a WHERE a.user_id = p_user FOR UPDATE;
    SELECT r.tokens INTO existing FROM solaris.reservations r WHERE r.call_id = p_call_id;
    IF FOUND THEN
        -- The caller refuses the call: a reservation key is ours and fresh, never reused.
        RETURN QUERY SELECT 'duplicate', 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
    IF account.status <> 'active' THEN
        RETURN QUERY SELECT account.status, 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
    remaining := account.credited_tokens - account.debited_tokens - account.reserved_tokens;
    amount := least(p_wanted, remaining);
    IF (p_wanted = 0 AND remaining <= 0) OR (p_wanted > 0 AND (amount < p_minimum OR amount <= 0)) THEN
        -- Refused with usage past the last warning: the user is blocked, tell them once.
        IF account.debited_tokens >= account.credited_tokens * coalesce(
                (SELECT max(level) FROM unnest(p_thresholds) AS level), 1.0) THEN
            PERFORM solaris.raise_usage_alert(p_user, p_thresholds, true);
        END IF;
        RETURN QUERY SELECT 'exhausted', 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
    amount := greatest(amount, 0);
    UPDATE solaris.accounts a SET reserved_tokens = a.reserved_tokens + amount, updated_at = now()
     WHERE a.user_id = p_user
    RETURNING * INTO account;
    INSERT INTO solaris.reservations (call_id, user_id, tokens, model, factor, expires_at)
    VALUES (p_call_id, p_user, amount, p_model, p_factor, now() + make_interval(secs => p_ttl_s));
    INSERT INTO solaris.ledger (user_id, kind, tokens, reserved_delta, model, call_id, actor)
    VALUES (p_user, 'reserve', amount, amount, p_model, p_call_id, 'solaris');
    RETURN QUERY SELECT 'reserved', amount, account.credited_tokens, account.debited_tokens,
                        account.reserved_tokens;
END $$;

-- A result that arrives after its reservation was returned (expired by the sweeper, or released
-- by a failure event of an attempt the router then retried) is still owed: one 'settle' row of its own, at the reservation's factor, to the reservation's user.
-- Used by solaris.resolve (a late success event) and solaris.settle_spooled (a late replay),
-- so both charge late results the same way. Idempotent: a second late settle changes nothing.
CREATE FUNCTION solaris.settle_late(
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

-- As in 0001, plus: a settle of an expired or released reservation is a late settle (charged,
-- not ignored): the provider served the call, whatever happened to its reservation.
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
    END IF;
    UPDATE solaris.reservations r SET state = new_state, resolved_at = now() WHERE r.call_id = p_call_id;
    UPDATE solaris.accounts a
       SET reserved_tokens = a.reserved_tokens - reservation.tokens,
           debited_tokens = a.debited_tokens + charged,
           updated_at = now()
     WHERE a.user_id = reservation.user_id;
    INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, reserved_delta, raw_tokens, model,
                                cost_usd, call_id, actor)
    VALUES (reservation.user_id, p_kind, CASE p_kind WHEN 'settle' THEN charged ELSE reservation.tokens END,
            charged, -reservation.tokens, p_raw_tokens, coalesce(p_model, reservation.model), p_cost_usd,
            p_call_id, 'solaris');
    IF charged > 0 THEN
        PERFORM solaris.raise_usage_alert(reservation.user_id, p_thresholds, false);
    END IF;
    RETURN QUERY SELECT new_state, charged;
END $$;

-- As in 0005, with late settles through solaris.settle_late, for a released reservation too.
CREATE OR REPLACE FUNCTION solaris.settle_spooled(
    p_call_id text, p_user text, p_raw_tokens bigint, p_model text, p_factor numeric, p_cost_usd numeric,
    p_default_tokens bigint, p_spooled_at text, p_thresholds numeric[] DEFAULT '{}'
) RETURNS TABLE (state text, charged_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    reservation solaris.reservations;
    was_reserved boolean;
    target text := p_user;
    rate numeric := p_factor;
BEGIN
    SELECT * INTO reservation FROM solaris.reservations r WHERE r.call_id = p_call_id FOR UPDATE;
    was_reserved := FOUND;
    IF was_reserved THEN
        IF reservation.state = 'pending' THEN
            RETURN QUERY SELECT * FROM solaris.resolve(p_call_id, 'settle', p_raw_tokens, p_model, p_cost_usd,
                                                       p_thresholds);
            RETURN;
        END IF;
        IF reservation.state = 'settled' THEN
            RETURN QUERY SELECT reservation.state, 0::bigint;
            RETURN;
        END IF;
        target := reservation.user_id;
        rate := reservation.factor;
    END IF;
    IF target IS NULL OR rate IS NULL THEN
        -- A failed settle whose reservation is gone (pruned after a very long outage): we
        -- cannot tell whom to charge.
        IF EXISTS (SELECT 1 FROM solaris.ledger l WHERE l.call_id = p_call_id AND l.kind = 'settle') THEN
            RETURN QUERY SELECT 'settled', 0::bigint;
        ELSE
            RETURN QUERY SELECT 'unknown', 0::bigint;
        END IF;
        RETURN;
    END IF;
    PERFORM solaris.provision(target, p_default_tokens);
    PERFORM 1 FROM solaris.accounts a WHERE a.user_id = target FOR UPDATE;
    RETURN QUERY SELECT * FROM solaris.settle_late(
        p_call_id, target, p_raw_tokens, coalesce(p_model, reservation.model), rate, p_cost_usd,
        CASE WHEN was_reserved THEN 'late settle: the reservation had been returned while the database was unreachable'
             ELSE 'unmetered call: the database was unreachable (fail_mode: open)' END
        || ', spooled at ' || coalesce(p_spooled_at, 'an unknown time'),
        p_thresholds);
END $$;

-- A call still running (an open stream) keeps its reservation: the stream wrapper pushes its
-- expiry forward while chunks flow, so the sweeper never returns tokens a live call may use.
CREATE FUNCTION solaris.extend_reservation(p_call_id text, p_ttl_s integer) RETURNS boolean
LANGUAGE sql AS $$
    UPDATE solaris.reservations r SET expires_at = now() + make_interval(secs => p_ttl_s)
     WHERE r.call_id = p_call_id AND r.state = 'pending'
    RETURNING true
$$;
