"""Retention across the ledger and the desk: what needs the ledger, its incidents and the
pure periods together (the ledger's own retention)."""
