"""Use cases shared by the API, the pages and the CLI: accounts, credits, reports, the doctor."""
