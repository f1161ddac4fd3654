-- The ledger: accounts hold running balances, every change to them has exactly one
-- ledger row (docs/architecture.md invariant 2), and reservations make each call id reservable
-- once and resolvable once (invariant 3). Everything lives in schema "solaris":
-- LiteLLM's Prisma sync may drop tables it does not know in "public".

CREATE TABLE solaris.accounts (
    user_id          text PRIMARY KEY CHECK (length(user_id) BETWEEN 1 AND 255),
    email            text,
    name             text,
    locale           text,
    status           text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked', 'disabled')),
    credited_tokens  bigint NOT NULL DEFAULT 0,
    debited_tokens   bigint NOT NULL DEFAULT 0 CHECK (debited_tokens >= 0),
    reserved_tokens  bigint NOT NULL DEFAULT 0 CHECK (reserved_tokens >= 0),
    -- Allowance period (refills start a new one) and the usage alerts already raised in it:
    -- alert_level is the highest threshold alerted; a credit that brings usage back under
    -- it lowers it and starts a new alert_cycle, so crossing again alerts again.
    period           text NOT NULL DEFAULT 'initial',
    alert_level      numeric NOT NULL DEFAULT 0,
    alert_cycle      integer NOT NULL DEFAULT 0,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE solaris.reservations (
    call_id     text PRIMARY KEY CHECK (length(call_id) BETWEEN 1 AND 200),
    user_id     text NOT NULL REFERENCES solaris.accounts (user_id),
    tokens      bigint NOT NULL CHECK (tokens >= 0),
    model       text,
    factor      numeric NOT NULL,
    state       text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'settled', 'released', 'expired')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    resolved_at timestamptz
);
CREATE INDEX reservations_pending_expiry ON solaris.reservations (expires_at) WHERE state = 'pending';

CREATE TABLE solaris.ledger (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         text NOT NULL REFERENCES solaris.accounts (user_id),
    kind            text NOT NULL CHECK (kind IN ('grant', 'credit', 'reserve', 'settle', 'release', 'expire', 'adjust')),
    -- The headline amount of the event, always >= 0; the deltas say what it did.
    tokens          bigint NOT NULL CHECK (tokens >= 0),
    credited_delta  bigint NOT NULL DEFAULT 0,
    debited_delta   bigint NOT NULL DEFAULT 0,
    reserved_delta  bigint NOT NULL DEFAULT 0,
    raw_tokens      bigint,
    model           text,
    cost_usd        numeric,
    call_id         text,
    actor           text,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_user_id ON solaris.ledger (user_id, id);
-- A call id appears at most once per kind: a duplicated event cannot write twice.
CREATE UNIQUE INDEX ledger_call_kind ON solaris.ledger (call_id, kind) WHERE call_id IS NOT NULL;

-- The transactional outbox of e-mails (docs/architecture.md invariants 4 and 5). Rows are written in
-- the transaction of the ledger change that caused them and sent later by a worker.
--   pending    waiting to be sent          sending    claimed by a worker until claimed_until
--   sent       delivered to the SMTP server failed    last try failed; retried at next_attempt_at
--   dead       gave up after the last try   no_address nobody to send it to; not retried
--   covered    a lower threshold passed over in the same call: recorded, never sent
CREATE TABLE solaris.alerts (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id          text NOT NULL REFERENCES solaris.accounts (user_id),
    kind             text NOT NULL CHECK (kind IN ('usage', 'credit')),
    threshold        numeric,
    period           text NOT NULL,
    alert_cycle      integer NOT NULL,
    credited_tokens  bigint NOT NULL,
    used_tokens      bigint NOT NULL,
    tokens           bigint,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead', 'no_address', 'covered')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_until    timestamptz,
    claimed_by       text,
    last_error       text,
    recipients       text,
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    CHECK ((kind = 'usage') = (threshold IS NOT NULL))
);
-- Exactly one usage alert per (user, allowance period, threshold, re-arming).
CREATE UNIQUE INDEX alerts_once ON solaris.alerts (user_id, period, threshold, alert_cycle) WHERE kind = 'usage';
CREATE INDEX alerts_due ON solaris.alerts (next_attempt_at) WHERE status IN ('pending', 'failed');
CREATE INDEX alerts_claimed ON solaris.alerts (claimed_until) WHERE status = 'sending';
CREATE INDEX alerts_user ON solaris.alerts (user_id, id);

-- Called with the account row locked, after a change to it. Raises the usage alert of the
-- highest level reached (thresholds plus 1.0, or 1.0 when p_blocked) unless already raised
-- in this cycle; lower levels passed over are recorded as covered. Returns that level.
CREATE FUNCTION solaris.raise_usage_alert(p_user text, p_thresholds numeric[], p_blocked boolean)
RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    used numeric;
    reached numeric;
BEGIN
    SELECT * INTO account FROM solaris.accounts a WHERE a.user_id = p_user;
    used := CASE WHEN account.credited_tokens <= 0 THEN 1
                 ELSE account.debited_tokens::numeric / account.credited_tokens END;
    SELECT max(level) INTO reached FROM unnest(p_thresholds || 1.0::numeric) AS level WHERE level <= used;
    IF p_blocked THEN
        reached := 1.0;
    END IF;
    IF reached IS NULL OR reached <= account.alert_level THEN
        RETURN NULL;
    END IF;
    INSERT INTO solaris.alerts (user_id, kind, threshold, period, alert_cycle, credited_tokens, used_tokens, status)
    SELECT p_user, 'usage', level, account.period, account.alert_cycle, account.credited_tokens,
           account.debited_tokens, CASE WHEN level = reached THEN 'pending' ELSE 'covered' END
      FROM unnest(p_thresholds || 1.0::numeric) AS level
     WHERE level > account.alert_level AND level <= reached;
    UPDATE solaris.accounts a SET alert_level = reached WHERE a.user_id = p_user;
    RETURN reached;
END $$;

-- After a credit: when usage fell back under alerted levels, re-arm them (a new cycle).
CREATE FUNCTION solaris.rearm_usage_alerts(p_user text, p_thresholds numeric[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    still_reached numeric;
BEGIN
    SELECT * INTO account FROM solaris.accounts a WHERE a.user_id = p_user;
    SELECT coalesce(max(level), 0) INTO still_reached
      FROM unnest(p_thresholds || 1.0::numeric) AS level
     WHERE account.credited_tokens > 0 AND level <= account.debited_tokens::numeric / account.credited_tokens;
    IF still_reached < account.alert_level THEN
        UPDATE solaris.accounts a SET alert_level = still_reached, alert_cycle = a.alert_cycle + 1
         WHERE a.user_id = p_user;
    END IF;
END $$;

-- The allowance period new accounts start in: the refill task moves it forward (see
-- solaris.refill), so a user first seen mid-period is not refilled on top of the grant.
CREATE TABLE solaris.refill_state (
    singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    current_period text NOT NULL
);
INSERT INTO solaris.refill_state (current_period) VALUES ('initial');

-- First sight of a user: the account and its default grant, exactly once even when
-- several first requests race (the loser's INSERT waits on the key, then does nothing).
CREATE FUNCTION solaris.provision(p_user text, p_tokens bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- The common case, a known user, costs one index probe and no write.
    IF EXISTS (SELECT 1 FROM solaris.accounts a WHERE a.user_id = p_user) THEN
        RETURN;
    END IF;
    INSERT INTO solaris.accounts (user_id, credited_tokens, period)
    VALUES (p_user, p_tokens, (SELECT current_period FROM solaris.refill_state))
    ON CONFLICT (user_id) DO NOTHING;
    IF FOUND THEN
        INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta, actor, reason)
        VALUES (p_user, 'grant', p_tokens, p_tokens, 'solaris', 'default allowance');
    END IF;
END $$;

-- Reserve up to p_wanted tokens for a call, at least p_minimum, in one round trip.
-- outcome: 'reserved' | 'duplicate' (this call id was reserved before) |
--          'exhausted' (less than p_minimum left) | 'blocked' | 'disabled'
CREATE FUNCTION solaris.reserve(
    p_user text, p_call_id text, p_wanted bigint, p_minimum bigint,
    p_default_tokens bigint, p_ttl_s integer, p_model text, p_factor numeric, p_thresholds numeric[] DEFAULT '{}'
) RETURNS TABLE (outcome text, reserved bigint, credited_tokens bigint, debited_tokens bigint,
                 reserved_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    existing bigint;
    amount bigint;
BEGIN
    PERFORM solaris.provision(p_user, p_default_tokens);
    -- The row lock orders concurrent reservations of one user: each sees the last one's result.
    SELECT * INTO account FROM solaris.accounts a WHERE a.user_id = p_user FOR UPDATE;
    SELECT r.tokens INTO existing FROM solaris.reservations r WHERE r.call_id = p_call_id;
    IF FOUND THEN
        RETURN QUERY SELECT 'duplicate', existing, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
    IF account.status <> 'active' THEN
        RETURN QUERY SELECT account.status, 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
    amount := least(p_wanted, account.credited_tokens - account.debited_tokens - account.reserved_tokens);
    IF p_wanted = 0 THEN
        -- A call that costs nothing (a free title call) is recorded, never refused for quota.
        amount := 0;
    ELSIF amount < p_minimum OR amount <= 0 THEN
        -- Refused with usage past the last warning: the user is blocked, tell them once.
        IF account.debited_tokens >= account.credited_tokens * coalesce(
                (SELECT max(level) FROM unnest(p_thresholds) AS level), 1.0) THEN
            PERFORM solaris.raise_usage_alert(p_user, p_thresholds, true);
        END IF;
        RETURN QUERY SELECT 'exhausted', 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens;
        RETURN;
    END IF;
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

-- Resolve a pending reservation: 'settle' charges ceil(p_raw_tokens × the factor the
-- call was reserved at), 'release' and 'expire' charge nothing. Returns the new state and
-- the tokens charged, or the old state and 0 when the call was resolved before (a
-- duplicate or late event, which changes nothing), or 'unknown'.
CREATE FUNCTION solaris.resolve(
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

-- Expire up to p_limit reservations past their TTL. SKIP LOCKED lets several replicas
-- sweep at once without waiting on each other or on a settle in progress.
CREATE FUNCTION solaris.expire_due(p_limit integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    due record;
    expired integer := 0;
BEGIN
    FOR due IN
        SELECT r.call_id FROM solaris.reservations r
         WHERE r.state = 'pending' AND r.expires_at <= now()
         ORDER BY r.expires_at
         LIMIT p_limit
         FOR UPDATE SKIP LOCKED
    LOOP
        IF (SELECT r.state FROM solaris.resolve(due.call_id, 'expire', NULL, NULL, NULL) r) = 'expired' THEN
            expired := expired + 1;
        END IF;
    END LOOP;
    RETURN expired;
END $$;

-- An admin credit; provisions the user first so a credit given before their first
-- call adds to the default allowance instead of replacing it. Re-arms usage alerts the
-- credit brought usage back under, and queues a receipt for the user.
CREATE FUNCTION solaris.credit(
    p_user text, p_tokens bigint, p_default_tokens bigint, p_actor text, p_reason text,
    p_thresholds numeric[] DEFAULT '{}'
) RETURNS SETOF solaris.accounts
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
BEGIN
    IF p_tokens <= 0 THEN
        RAISE EXCEPTION 'credit must be positive, got %', p_tokens;
    END IF;
    PERFORM solaris.provision(p_user, p_default_tokens);
    INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta, actor, reason)
    VALUES (p_user, 'credit', p_tokens, p_tokens, p_actor, p_reason);
    UPDATE solaris.accounts a SET credited_tokens = a.credited_tokens + p_tokens, updated_at = now()
     WHERE a.user_id = p_user
    RETURNING a.* INTO account;
    PERFORM solaris.rearm_usage_alerts(p_user, p_thresholds);
    INSERT INTO solaris.alerts (user_id, kind, period, alert_cycle, credited_tokens, used_tokens, tokens)
    VALUES (p_user, 'credit', account.period, account.alert_cycle, account.credited_tokens,
            account.debited_tokens, p_tokens);
    RETURN QUERY SELECT * FROM solaris.accounts a WHERE a.user_id = p_user;
END $$;
