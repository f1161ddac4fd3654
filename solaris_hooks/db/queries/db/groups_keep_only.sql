-- Forget the groups no longer configured (their members get the top-level thresholds).
DELETE FROM solaris.groups g WHERE NOT (g.group_name = ANY (%(names)s))
