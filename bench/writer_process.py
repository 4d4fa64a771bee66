"""One process writing records with the ledger writer of a given checkout.

    python bench/writer_process.py ROOT RECORDS EVENTS BATCH

Writes the first EVENTS lines of the file RECORDS (one record a line) to a fresh SQLite
ledger in batches of BATCH, with the writer of the checkout at ROOT, as the worker's
writer process runs it. ``bench/pipeline.py --writer-only --before REV --instructions``
runs it under callgrind for the checkout and for REV, on the same records. It uses only
what every commit since 7339b35 has: ``agents.writer.start`` and ``write``,
``WriterSpec``, ``Position`` and ``prepare``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def main() -> None:
    root, records_file, events, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:5])
    sys.path.insert(0, root)
    from agents import writer
    from pipeline.engine import Position
    from pipeline.ledger.storage.schema import prepare
    from pipeline.ledger.storage.store import Ledger
    from pipeline.packs import load_pack

    records = Path(records_file).read_bytes().split(b"\n")[:events]
    with tempfile.TemporaryDirectory(prefix="bench-writer-") as folder:
        url = f"sqlite:///{folder}/ledger.db"
        prepare(Ledger.open(url).engine)
        writer.start(writer.WriterSpec(url, load_pack(), b"\xb3" * 32, log_level="WARNING"))
        positioned = [
            (raw, Position("sharing.events", 0, offset)) for offset, raw in enumerate(records)
        ]
        for first in range(0, len(positioned), batch):
            result = writer.write(positioned[first : first + batch])
            if isinstance(result, writer.Failed):
                raise SystemExit(f"the writer at {root} failed: {result.error}")


if __name__ == "__main__":
    main()
