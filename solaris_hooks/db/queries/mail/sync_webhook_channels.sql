-- The configured channels become active (new ones are created), every other one inactive:
-- from now on the alerts' trigger fans out to exactly these. Deliveries already queued for a
-- channel that was removed stay where they are, visible, and are sent if it comes back.
WITH configured AS (SELECT DISTINCT unnest(%(channels)s::text[]) AS channel),
activated AS (
    INSERT INTO solaris.alert_channels (channel)
    SELECT channel FROM configured
        ON CONFLICT (channel) DO UPDATE SET active = true, updated_at = now()
     WHERE NOT solaris.alert_channels.active
)
UPDATE solaris.alert_channels c SET active = false, updated_at = now()
 WHERE c.active AND c.channel NOT IN (SELECT channel FROM configured)
