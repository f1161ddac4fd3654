-- Settles of calls reserved one by one (not from a lease), written in batches by the process
-- that served them: with settings.leases the success hook charges such a call in its journal
-- and the next batch writes it, as it does leased calls (docs/architecture.md, "Leases").
-- Each call is charged exactly as solaris.resolve charges it alone (a late result after its
-- reservation expired included); a call already settled is charged nothing more. Calls are
-- taken in the order of their accounts, as solaris.settle_leased takes leases, so two
-- batches (two replicas) never wait for each other's locks in a cycle.
CREATE FUNCTION solaris.settle_batch(p_calls jsonb, p_thresholds numeric[] DEFAULT '{}')
RETURNS TABLE (call_id text, state text, charged_tokens bigint)
LANGUAGE plpgsql AS $$
DECLARE
    call record;
BEGIN
    FOR call IN
        SELECT c.call_id, c.raw_tokens, c.model, c.cost_usd
          FROM jsonb_to_recordset(p_calls) AS c(call_id text, raw_tokens bigint, model text, cost_usd numeric)
          LEFT JOIN solaris.reservations r ON r.call_id = c.call_id
         ORDER BY r.user_id, c.call_id
    LOOP
        RETURN QUERY
            SELECT call.call_id, resolved.state, resolved.charged_tokens
              FROM solaris.resolve(call.call_id, 'settle', call.raw_tokens, call.model, call.cost_usd, p_thresholds)
                   AS resolved;
    END LOOP;
END $$;
