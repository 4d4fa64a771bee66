"""What an entry is and how it is hashed and kept: the entry's types, the hash chain, the
payload's packing. Pure: no database."""
