"""The ledger's database: its tables and migrations, the two dialects it runs on, the
append under the chain-head lock, the Merkle tree's nodes and the projections written in
the same transaction, and the errors a database failure becomes."""
