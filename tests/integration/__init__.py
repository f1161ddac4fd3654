"""Our code in this process against real parts: Postgres, an SMTP server, the fake provider."""
