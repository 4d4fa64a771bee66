"""The pure core: policy packs, one function per rule, and decide(). No I/O here."""
