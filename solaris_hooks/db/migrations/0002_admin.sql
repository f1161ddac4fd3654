-- Admin surface: an audit trail, idempotent credits, corrections, bulk grants, refills.

-- Every admin action, with who did it (an alias or a key hash, never a key) and the
-- state before and after.
CREATE TABLE solaris.audit (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor       text NOT NULL,
    action      text NOT NULL,
    user_id     text,
    before      jsonb,
    after       jsonb,
    details     jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_user ON solaris.audit (user_id, id);
CREATE INDEX audit_created_at ON solaris.audit (created_at);

-- Idempotency-Key of a credit request: the first request's answer is replayed for a
-- retry with the same key and body, so a double click never credits twice.
CREATE TABLE solaris.idempotency_keys (
    key           text PRIMARY KEY CHECK (length(key) BETWEEN 1 AND 255),
    request_hash  text NOT NULL,
    response      jsonb,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX accounts_status ON solaris.accounts (status);

-- A correction with a reason: a signed change of credited (the allowance) or debited
-- (what was used, e.g. refunding a bad call). Refuses to make either negative.
CREATE FUNCTION solaris.adjust(
    p_user text, p_tokens bigint, p_target text, p_actor text, p_reason text, p_thresholds numeric[] DEFAULT '{}'
) RETURNS SETOF solaris.accounts
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
BEGIN
    IF p_tokens = 0 OR p_target NOT IN ('credited', 'debited') OR coalesce(p_reason, '') = '' THEN
        RAISE EXCEPTION 'invalid adjustment' USING ERRCODE = '22023';
    END IF;
    SELECT * INTO account FROM solaris.accounts a WHERE a.user_id = p_user FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    IF (p_target = 'credited' AND account.credited_tokens + p_tokens < 0)
       OR (p_target = 'debited' AND account.debited_tokens + p_tokens < 0) THEN
        RAISE EXCEPTION 'adjustment would make % tokens negative', p_target USING ERRCODE = '22003';
    END IF;
    INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta, debited_delta, actor, reason)
    VALUES (p_user, 'adjust', abs(p_tokens),
            CASE WHEN p_target = 'credited' THEN p_tokens ELSE 0 END,
            CASE WHEN p_target = 'debited' THEN p_tokens ELSE 0 END, p_actor, p_reason);
    UPDATE solaris.accounts a
       SET credited_tokens = a.credited_tokens + CASE WHEN p_target = 'credited' THEN p_tokens ELSE 0 END,
           debited_tokens = a.debited_tokens + CASE WHEN p_target = 'debited' THEN p_tokens ELSE 0 END,
           updated_at = now()
     WHERE a.user_id = p_user;
    -- Less usage or more allowance re-arms alerts; more usage may cross a threshold.
    PERFORM solaris.rearm_usage_alerts(p_user, p_thresholds);
    PERFORM solaris.raise_usage_alert(p_user, p_thresholds, false);
    RETURN QUERY SELECT * FROM solaris.accounts a WHERE a.user_id = p_user;
END $$;

-- A new account with a chosen first grant (an admin creating a user ahead of use).
CREATE FUNCTION solaris.create_account(
    p_user text, p_tokens bigint, p_email text, p_name text, p_locale text, p_actor text
) RETURNS SETOF solaris.accounts
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO solaris.accounts (user_id, credited_tokens, email, name, locale, period)
    VALUES (p_user, p_tokens, p_email, p_name, p_locale, (SELECT current_period FROM solaris.refill_state))
    ON CONFLICT (user_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta, actor, reason)
    VALUES (p_user, 'grant', p_tokens, p_tokens, p_actor, 'initial tokens');
    RETURN QUERY SELECT * FROM solaris.accounts a WHERE a.user_id = p_user;
END $$;

-- Credit many users at once (every active user when p_users is NULL); no receipts, so a
-- monthly bonus does not flood inboxes. Returns how many accounts were credited.
CREATE FUNCTION solaris.bulk_credit(
    p_users text[], p_tokens bigint, p_actor text, p_reason text, p_thresholds numeric[] DEFAULT '{}'
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    target record;
    credited integer := 0;
BEGIN
    IF p_tokens <= 0 THEN
        RAISE EXCEPTION 'credit must be positive, got %', p_tokens USING ERRCODE = '22023';
    END IF;
    FOR target IN
        SELECT a.user_id FROM solaris.accounts a
         WHERE (p_users IS NULL AND a.status = 'active') OR a.user_id = ANY (p_users)
         ORDER BY a.user_id
           FOR UPDATE
    LOOP
        INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta, actor, reason)
        VALUES (target.user_id, 'credit', p_tokens, p_tokens, p_actor, p_reason);
        UPDATE solaris.accounts a SET credited_tokens = a.credited_tokens + p_tokens, updated_at = now()
         WHERE a.user_id = target.user_id;
        PERFORM solaris.rearm_usage_alerts(target.user_id, p_thresholds);
        credited := credited + 1;
    END LOOP;
    RETURN credited;
END $$;

-- Start allowance period p_period for up to p_limit accounts still in an older one:
-- 'add' credits p_amount, 'reset_to' sets what is left (credited − debited) to p_amount.
-- Each account moves to the new period once, whatever the number of replicas running
-- this (SKIP LOCKED, and the period check under the row lock); alerts start afresh.
CREATE FUNCTION solaris.refill(p_period text, p_mode text, p_amount bigint, p_limit integer)
RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    delta bigint;
    refilled integer := 0;
BEGIN
    IF p_mode NOT IN ('add', 'reset_to') OR p_amount < 0 THEN
        RAISE EXCEPTION 'invalid refill % %', p_mode, p_amount USING ERRCODE = '22023';
    END IF;
    UPDATE solaris.refill_state SET current_period = p_period WHERE current_period <> p_period;
    FOR account IN
        SELECT * FROM solaris.accounts a
         WHERE a.period <> p_period AND a.status <> 'disabled'
         ORDER BY a.user_id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        delta := CASE p_mode WHEN 'add' THEN p_amount
                             ELSE p_amount - (account.credited_tokens - account.debited_tokens) END;
        UPDATE solaris.accounts a
           SET credited_tokens = a.credited_tokens + delta, period = p_period, alert_level = 0, alert_cycle = 0,
               updated_at = now()
         WHERE a.user_id = account.user_id;
        INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta, actor, reason)
        VALUES (account.user_id, 'grant', abs(delta), delta, 'solaris', 'refill ' || p_period);
        refilled := refilled + 1;
    END LOOP;
    RETURN refilled;
END $$;
