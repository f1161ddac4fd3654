-- Streams reserved from leases (settings.leases): a stream's reservation is held in memory
-- from its process's lease, and grows from it as the stream delivers. Two fields more per call
-- of solaris.settle_leased, otherwise unchanged (0009):
--   * held_tokens: what the call held of its lease; it is charged at most that, as a metered
--     stream on a reservation of its own is charged at most what that reservation holds (0008).
--   * running: the line its process journaled before delivering (quota/leased_streams.py),
--     charged by a spool replay when the process died mid-stream: what the stream held is owed,
--     as when a metered reservation of its own expires (0008). The ledger row says so.
CREATE OR REPLACE FUNCTION solaris.settle_leased(p_calls jsonb, p_ttl_s integer, p_thresholds numeric[] DEFAULT '{}')
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
                                cost_usd numeric, held_tokens bigint, running boolean)
                 WHERE c.lease_id = held_lease_id
            LOOP
                charged := ceil(greatest(call.raw_tokens, 0) * call.factor);
                IF call.held_tokens IS NOT NULL THEN
                    charged := least(charged, greatest(call.held_tokens, 0));
                END IF;
                from_lease := least(charged, lease_left);
                INSERT INTO solaris.ledger (user_id, kind, tokens, debited_delta, reserved_delta, raw_tokens, model,
                                            cost_usd, call_id, lease_id, actor, reason)
                VALUES (lease.user_id, 'settle', charged, charged, -from_lease, call.raw_tokens, call.model,
                        call.cost_usd, call.call_id, held_lease_id, 'solaris',
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
                   account.reserved_tokens, account_charged
              FROM solaris.reservations r WHERE r.call_id = ANY (owner.lease_ids) ORDER BY r.call_id;
    END LOOP;
END $$;
