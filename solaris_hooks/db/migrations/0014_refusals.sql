-- Refused calls per user (quota/refusal_counts.py), for the admin pages: how many calls the
-- user's quota, status or rate limits refused, and when the last one was. Written in batches
-- by each proxy, never by the refused call itself.
ALTER TABLE solaris.accounts
    ADD COLUMN refused_calls bigint NOT NULL DEFAULT 0 CHECK (refused_calls >= 0),
    ADD COLUMN last_refused_at timestamptz;
