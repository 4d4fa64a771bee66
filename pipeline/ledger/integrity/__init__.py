"""Checking the ledger whole: its chain, tree, checkpoints, the rows beside the chain
and every projection against a rebuild from the entries (``ledger verify``)."""
