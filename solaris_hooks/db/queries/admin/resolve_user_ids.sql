-- The account each typed id means, in the order given: an account stored exactly as typed,
-- else the account an id merged away went into, else the normalised id (no account yet).
SELECT coalesce(a.user_id, m.into_user_id, t.canonical)
  FROM unnest(%(exact)s::text[], %(canonical)s::text[]) WITH ORDINALITY AS t (exact, canonical, position)
  LEFT JOIN solaris.accounts a ON a.user_id = t.exact
  LEFT JOIN solaris.merged_accounts m ON m.from_user_id = t.exact
 ORDER BY t.position
