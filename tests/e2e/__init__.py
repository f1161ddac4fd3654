"""LiteLLM proxy processes with our hooks, driven as LibreChat and admins drive them; a browser."""
