"""Reports built from the ledger: subject access, the record of processing."""
