-- One row: how many rows of each kind moved to the account merged into.
SELECT * FROM solaris.merge_accounts(%(from_user_id)s, %(into_user_id)s, %(actor)s, %(levels)s)
