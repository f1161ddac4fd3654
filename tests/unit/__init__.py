"""Pure functions and in-process objects: no process, no Postgres, no socket; seconds in all."""
