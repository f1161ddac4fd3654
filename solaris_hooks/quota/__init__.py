"""The request path: who is calling, what a call may cost, reserve and settle, rate limits, the spool."""
