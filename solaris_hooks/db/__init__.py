"""The database: connections, migrations, and the ledger's SQL calls."""
