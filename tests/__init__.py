"""Tests by kind: unit/ (in-process, no database), integration/ (Postgres, SMTP, in-process),
e2e/ (LiteLLM proxy processes, a browser), deploy/ (packaging, image, compose, scripts)."""
