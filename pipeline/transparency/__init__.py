"""The verifiable log: Merkle tree, signed checkpoints, proofs and witnesses (C2SP)."""
