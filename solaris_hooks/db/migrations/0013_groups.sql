-- User groups (settings.groups, solaris_hooks/settings/groups.py): a user belongs to at most
-- one group, whose settings (allowance, prices, rate limits, alert thresholds) apply to them.
--   * accounts.group_name / group_source: the group, and who chose it: 'admin' (API, CLI,
--     pages, CSV import; wins) or 'header' (settings.group_header on a call from a key
--     allowed to name end users). NULL: the top-level settings.
--   * reservations.group_name and ledger.group_name / ledger.factor: which group and factor
--     charged each call (the settle row says so; a reserve row too).
--   * solaris.groups: each configured group's alert thresholds, written by the proxy from its
--     settings at start and reload, read where usage alerts are raised (which may be a batch
--     of many users' calls, written by any replica).
ALTER TABLE solaris.accounts
    ADD COLUMN group_name text CHECK (group_name ~ '^[a-z0-9][a-z0-9_.-]{0,63}$'),
    ADD COLUMN group_source text CHECK (group_source IN ('admin', 'header')),
    ADD CONSTRAINT accounts_group_source CHECK ((group_name IS NULL) = (group_source IS NULL));
ALTER TABLE solaris.reservations ADD COLUMN group_name text;
ALTER TABLE solaris.ledger ADD COLUMN group_name text, ADD COLUMN factor numeric;

CREATE TABLE solaris.groups (
    group_name        text PRIMARY KEY,
    alert_thresholds  numeric[],
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- As in 0001, except that a member of a configured group is alerted at its group's thresholds.
CREATE OR REPLACE FUNCTION solaris.raise_usage_alert(p_user text, p_thresholds numeric[], p_blocked boolean)
RETURNS numeric
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    used numeric;
    reached numeric;
    levels numeric[];
BEGIN
    SELECT * INTO account FROM solaris.accounts a WHERE a.user_id = p_user;
    SELECT g.alert_thresholds INTO levels FROM solaris.groups g WHERE g.group_name = account.group_name;
    levels := coalesce(levels, p_thresholds);
    used := CASE WHEN account.credited_tokens <= 0 THEN 1
                 ELSE account.debited_tokens::numeric / account.credited_tokens END;
    SELECT max(level) INTO reached FROM unnest(levels || 1.0::numeric) AS level WHERE level <= used;
    IF p_blocked THEN
        reached := 1.0;
    END IF;
    IF reached IS NULL OR reached <= account.alert_level THEN
        RETURN NULL;
    END IF;
    INSERT INTO solaris.alerts (user_id, kind, threshold, period, alert_cycle, credited_tokens, used_tokens, status)
    SELECT p_user, 'usage', level, account.period, account.alert_cycle, account.credited_tokens,
           account.debited_tokens, CASE WHEN level = reached THEN 'pending' ELSE 'covered' END
      FROM unnest(levels || 1.0::numeric) AS level
     WHERE level > account.alert_level AND level <= reached;
    UPDATE solaris.accounts a SET alert_level = reached WHERE a.user_id = p_user;
    RETURN reached;
END $$;

-- A reservation made for a call priced as a member of p_group (NULL: no group), as
-- solaris.reserve or solaris.reserve_metered makes it, once the account's group is checked:
--   * an admin's group wins; else the group the call's header names (p_header_group), which
--     is then the account's (source 'header', audited when it changes); else the account's.
--   * when that group is not p_group, nothing is reserved: outcome 'regroup', with the group
--     in group_name, and the caller prices the call again for it (the group it assumed was
--     stale: an admin changed it, or this process had not seen the user yet).
CREATE FUNCTION solaris.reserve_in_group(
    p_user text, p_group text, p_header_group text, p_metered boolean, p_call_id text, p_wanted bigint,
    p_minimum bigint, p_default_tokens bigint, p_ttl_s integer, p_model text, p_factor numeric,
    p_thresholds numeric[] DEFAULT '{}'
) RETURNS TABLE (outcome text, reserved bigint, credited_tokens bigint, debited_tokens bigint,
                 reserved_tokens bigint, group_name text, group_source text)
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    effective text;
    source text;
    result record;
BEGIN
    PERFORM solaris.provision(p_user, p_default_tokens);
    SELECT * INTO account FROM solaris.accounts a WHERE a.user_id = p_user FOR UPDATE;
    effective := CASE WHEN account.group_source = 'admin' THEN account.group_name
                      ELSE coalesce(p_header_group, account.group_name) END;
    source := CASE WHEN account.group_source = 'admin' THEN 'admin' WHEN effective IS NOT NULL THEN 'header' END;
    IF effective IS DISTINCT FROM p_group THEN
        RETURN QUERY SELECT 'regroup', 0::bigint, account.credited_tokens, account.debited_tokens,
                            account.reserved_tokens, effective, source;
        RETURN;
    END IF;
    IF effective IS DISTINCT FROM account.group_name THEN
        UPDATE solaris.accounts a SET group_name = effective, group_source = 'header', updated_at = now()
         WHERE a.user_id = p_user;
        INSERT INTO solaris.audit (actor, action, user_id, before, after)
        VALUES ('header', 'user.group', p_user, jsonb_build_object('group', account.group_name),
                jsonb_build_object('group', effective));
    END IF;
    IF p_metered THEN
        SELECT * INTO result FROM solaris.reserve_metered(p_user, p_call_id, p_wanted, p_minimum, p_default_tokens,
                                                          p_ttl_s, p_model, p_factor, p_thresholds);
    ELSE
        SELECT * INTO result FROM solaris.reserve(p_user, p_call_id, p_wanted, p_minimum, p_default_tokens,
                                                  p_ttl_s, p_model, p_factor, p_thresholds);
    END IF;
    IF result.outcome = 'reserved' AND effective IS NOT NULL THEN
        UPDATE solaris.reservations r SET group_name = effective WHERE r.call_id = p_call_id;
        UPDATE solaris.ledger l SET group_name = effective, factor = p_factor
         WHERE l.call_id = p_call_id AND l.kind = 'reserve';
    END IF;
    RETURN QUERY SELECT result.outcome, result.reserved, result.credited_tokens, result.debited_tokens,
                        result.reserved_tokens, effective, source;
END $$;

-- A settle row written by solaris.resolve (and the functions built on it) names its call's
-- group and factor, from the reservation it settles; settle_leased writes its own.
CREATE FUNCTION solaris.ledger_group_of_call() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT r.group_name, r.factor INTO NEW.group_name, NEW.factor
      FROM solaris.reservations r WHERE r.call_id = NEW.call_id AND r.lease_owner IS NULL;
    RETURN NEW;
END $$;

CREATE TRIGGER ledger_group_of_call BEFORE INSERT ON solaris.ledger
    FOR EACH ROW WHEN (NEW.kind = 'settle' AND NEW.call_id IS NOT NULL AND NEW.factor IS NULL)
    EXECUTE FUNCTION solaris.ledger_group_of_call();

-- As in 0011, and each settle row names the group and factor its call was priced at (from the
-- batch: a leased call has no reservation of its own), and each lease returned says its
-- account's group, so a process gives up a lease whose user an admin moved to another group.
DROP FUNCTION solaris.settle_leased(jsonb, integer, numeric[]);
CREATE FUNCTION solaris.settle_leased(p_calls jsonb, p_ttl_s integer, p_thresholds numeric[] DEFAULT '{}')
RETURNS TABLE (lease_id text, lease_state text, lease_tokens bigint, status text, credited_tokens bigint,
               debited_tokens bigint, reserved_tokens bigint, charged_tokens bigint, group_name text,
               group_source text)
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
                                cost_usd numeric, held_tokens bigint, running boolean, group_name text)
                 WHERE c.lease_id = held_lease_id
            LOOP
                charged := ceil(greatest(call.raw_tokens, 0) * call.factor);
                IF call.held_tokens IS NOT NULL THEN
                    charged := least(charged, greatest(call.held_tokens, 0));
                END IF;
                from_lease := least(charged, lease_left);
                INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, reserved_delta, raw_tokens, model,
                                            cost_usd, call_id, lease_id, actor, group_name, factor, reason)
                VALUES (lease.user_id, 'settle', charged, charged, -from_lease, call.raw_tokens, call.model,
                        call.cost_usd, call.call_id, held_lease_id, 'solaris', call.group_name, call.factor,
                        CASE WHEN coalesce(call.running, false)
                             THEN 'its process ended mid-stream: what the stream held is charged'
                             WHEN from_lease < charged THEN 'late settle: its lease had been returned' END)
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
                   account.reserved_tokens, account_charged, account.group_name, account.group_source
              FROM solaris.reservations r WHERE r.call_id = ANY (owner.lease_ids) ORDER BY r.call_id;
    END LOOP;
END $$;
