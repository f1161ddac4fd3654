-- One configured group and its alert thresholds (NULL: the top-level ones).
INSERT INTO solaris.groups (group_name, alert_thresholds) VALUES (%(name)s, %(levels)s)
ON CONFLICT (group_name) DO UPDATE SET alert_thresholds = EXCLUDED.alert_thresholds, updated_at = now()
 WHERE solaris.groups.alert_thresholds IS DISTINCT FROM EXCLUDED.alert_thresholds
