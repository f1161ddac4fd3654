-- A group's own refill rule (settings.groups.<name>.refill; issue 18, part 1). The proxy runs
-- solaris.refill_group once per rule: the top-level rule (p_group NULL) for the accounts with
-- no group or whose group has no rule of its own (not in p_own_rule_groups), and each group's
-- rule for that group's members. solaris.refill (0002) stays for replicas not upgraded yet: one
-- still running it refills group members by the top-level rule too, so every replica runs
-- this version before a group is given a rule of its own.
--
-- Period keys. Each rule has a current period of its own, moved forward by its refills only:
--   * the top-level rule's stays in solaris.refill_state, where new accounts take their first
--     period from (solaris.provision, solaris.create_account): a group on a weekly schedule
--     never writes it, so it cannot make a new account of the monthly top level look due;
--   * a group's is in solaris.group_refill_periods (a group without a row: the top level's).
-- An account is created without a group and put in one afterwards (a call's header in
-- solaris.reserve_in_group, an admin): a move goes through solaris.refill_period_on_move.
--
-- A move between groups whose rules differ keeps the balance as it is until the new rule's
-- next period starts: an account up to date under its old rule takes the new rule's current
-- period key, so a new member of a weekly group is not refilled on top of its first grant,
-- and a member moved from a monthly to a weekly group is refilled next Monday, not at once.
-- An account its old rule had not refilled yet (a period just started) keeps its key and is
-- refilled by its new rule at its next round. A move between rules on the same key changes
-- nothing. A group given a rule on another schedule than the top level's (or a rule whose
-- schedule changes) refills its members at once: the period they are in is not one of the
-- new schedule's, as after a change of the top-level schedule.
--
-- A period key may come back to an account (monthly → weekly group → monthly in the same
-- month), so an account entering a period starts the next alert cycle of that period, never
-- one whose alerts were already raised (alerts_once is unique per period and cycle).

CREATE TABLE solaris.group_refill_periods (
    group_name     text PRIMARY KEY,
    current_period text NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- The current period of the rule that covers members of p_group (NULL: no group).
CREATE FUNCTION solaris.refill_period_of(p_group text) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT p.current_period FROM solaris.group_refill_periods p WHERE p.group_name = p_group),
                    (SELECT s.current_period FROM solaris.refill_state s))
$$;

-- The first usage-alert cycle of p_period that raised nothing for p_user yet.
CREATE FUNCTION solaris.fresh_alert_cycle(p_user text, p_period text) RETURNS integer
LANGUAGE sql STABLE AS $$
    SELECT coalesce(max(al.alert_cycle) + 1, 0)
      FROM solaris.alerts al
     WHERE al.user_id = p_user AND al.period = p_period AND al.kind = 'usage'
$$;

-- Refill the accounts of one rule, as solaris.refill does for all: up to p_limit accounts,
-- each once per period however many replicas run this (SKIP LOCKED, and the period and group
-- checks under the row lock); the grant's reason names the group whose rule it follows.
CREATE FUNCTION solaris.refill_group(
    p_period text, p_mode text, p_amount bigint, p_limit integer, p_group text, p_own_rule_groups text[]
) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    account solaris.accounts;
    delta bigint;
    refilled integer := 0;
BEGIN
    IF p_mode NOT IN ('add', 'reset_to') OR p_amount < 0 THEN
        RAISE EXCEPTION 'invalid refill % %', p_mode, p_amount USING ERRCODE = '22023';
    END IF;
    IF p_group IS NULL THEN
        UPDATE solaris.refill_state SET current_period = p_period WHERE current_period <> p_period;
    ELSE
        -- An update that changes nothing and an insert that does nothing lock nothing: replicas
        -- wait on each other only at the start of a period (ON CONFLICT DO UPDATE would lock).
        UPDATE solaris.group_refill_periods p SET current_period = p_period, updated_at = now()
         WHERE p.group_name = p_group AND p.current_period <> p_period;
        INSERT INTO solaris.group_refill_periods (group_name, current_period) VALUES (p_group, p_period)
        ON CONFLICT (group_name) DO NOTHING;
    END IF;
    -- A group that lost its rule: its members' moves follow the top level's period again.
    DELETE FROM solaris.group_refill_periods p WHERE p.group_name <> ALL (p_own_rule_groups);
    FOR account IN
        SELECT * FROM solaris.accounts a
         WHERE a.period <> p_period AND a.status <> 'disabled'
           AND (a.group_name = p_group
                OR (p_group IS NULL AND (a.group_name IS NULL OR a.group_name <> ALL (p_own_rule_groups))))
         ORDER BY a.user_id
         LIMIT p_limit
           FOR UPDATE SKIP LOCKED
    LOOP
        delta := CASE p_mode WHEN 'add' THEN p_amount
                             ELSE p_amount - (account.credited_tokens - account.debited_tokens) END;
        UPDATE solaris.accounts a
           SET credited_tokens = a.credited_tokens + delta, period = p_period, alert_level = 0,
               alert_cycle = solaris.fresh_alert_cycle(account.user_id, p_period), updated_at = now()
         WHERE a.user_id = account.user_id;
        INSERT INTO solaris.ledger (user_id, kind, tokens, credited_delta, actor, group_name, reason)
        VALUES (account.user_id, 'grant', abs(delta), delta, 'solaris', p_group,
                'refill ' || p_period || coalesce(' (group ' || p_group || ')', ''));
        refilled := refilled + 1;
    END LOOP;
    RETURN refilled;
END $$;

-- See "A move between groups" above. Runs for every change of group (header, admin, import).
CREATE FUNCTION solaris.refill_period_on_move() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.period = solaris.refill_period_of(OLD.group_name) THEN
        NEW.period := solaris.refill_period_of(NEW.group_name);
    END IF;
    IF NEW.period <> OLD.period THEN
        NEW.alert_cycle := solaris.fresh_alert_cycle(NEW.user_id, NEW.period);
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER accounts_refill_period_on_move BEFORE UPDATE OF group_name ON solaris.accounts
    FOR EACH ROW WHEN (OLD.group_name IS DISTINCT FROM NEW.group_name)
    EXECUTE FUNCTION solaris.refill_period_on_move();
