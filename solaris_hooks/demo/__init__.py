"""What `make run` needs without an API key or a database server: the demo model, embedded Postgres."""
