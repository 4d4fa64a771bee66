"""The append-only, tamper-evident ledger of decisions (SQLite or PostgreSQL)."""
