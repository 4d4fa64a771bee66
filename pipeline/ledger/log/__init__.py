"""The verifiable log kept over the ledger: signed checkpoints, witnesses' cosignatures,
the maximum merge delay, the log's origin, and proofs for what a report hands out."""
