-- Alert webhooks (settings.alert_webhooks): every usage alert the outbox e-mails is also
-- delivered to each configured webhook, one delivery row per (alert, channel), with the
-- outbox's rules (docs/architecture.md invariants 4 and 5): written in the transaction that
-- wrote the alert, claimed with SKIP LOCKED and a lease, retried with backoff, then dead.
--
-- A channel is a webhook's name (settings.AlertWebhook.channel). The outbox worker marks
-- the configured ones active when it starts; the alert's own insert (the trigger below)
-- fans out to the active ones, so a crossing reaches a webhook exactly when it reaches the
-- e-mail outbox, and an alert raised before a webhook was configured never reaches it.
CREATE TABLE solaris.alert_channels (
    channel     text PRIMARY KEY,
    active      boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

--   pending    waiting to be sent          sending    claimed by a worker until claimed_until
--   sent       the receiver answered 2xx    failed     last try failed; retried at next_attempt_at
--   dead       gave up: after the last try, or at once on an answer that retrying cannot change (4xx)
CREATE TABLE solaris.webhook_deliveries (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alert_id         bigint NOT NULL REFERENCES solaris.alerts (id) ON DELETE CASCADE,
    channel          text NOT NULL REFERENCES solaris.alert_channels (channel),
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sending', 'sent', 'failed', 'dead')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    claimed_until    timestamptz,
    claimed_by       text,
    last_error       text,
    response_status  integer,
    sent_at          timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    -- Exactly one delivery of an alert per channel.
    UNIQUE (alert_id, channel)
);
CREATE INDEX webhook_deliveries_due ON solaris.webhook_deliveries (next_attempt_at)
    WHERE status IN ('pending', 'failed');
CREATE INDEX webhook_deliveries_claimed ON solaris.webhook_deliveries (claimed_until) WHERE status = 'sending';

-- Only what is e-mailed as a crossing: usage alerts raised as pending. A covered level
-- (passed over in the same call) is not sent by e-mail either, and credit receipts are the
-- user's own business, not the channel's.
CREATE FUNCTION solaris.fan_out_alert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.kind = 'usage' AND NEW.status = 'pending' THEN
        INSERT INTO solaris.webhook_deliveries (alert_id, channel)
        SELECT NEW.id, c.channel FROM solaris.alert_channels c WHERE c.active;
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER alerts_fan_out AFTER INSERT ON solaris.alerts
    FOR EACH ROW EXECUTE FUNCTION solaris.fan_out_alert();
