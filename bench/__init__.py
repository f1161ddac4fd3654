"""`make bench`: what solaris_hooks costs the LiteLLM proxy, and how fast the ledger runs."""
