"""``sharing-audit ledger rotate-key``: the ledger's pseudonym key replaced by a new random
one, and the old one destroyed (beside a SQLite ledger) or handed to the operator to
destroy (a key kept in SHARING_AUDIT_PSEUDONYM_KEY). See :mod:`pipeline.ledger.privacy.rotation`.

Beside a SQLite ledger, the new key is written to a new file (0600, synced) before the
ledger records it; after the commit the old file's bytes are overwritten and the new file
moved into its place. A crash in between leaves both files: the next command (this one
again, or any other) finishes the swap, since the ledger says which key it needs.
"""

from __future__ import annotations

import getpass
import secrets
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from pipeline.cli.exits import fail
from pipeline.cli.options import DbOption, database_url, open_ledger, pseudonym_key_for
from pipeline.keyfiles import KEY_BYTES, key_file_for, pending_key_file, write_new_key_file
from pipeline.ledger.privacy.rotation import Rotated, RotationRefused, rotate_key
from pipeline.ledger.storage.errors import LedgerError
from pipeline.ledger.writing.keys import FINISHED, KeyRefused, settle_key_file
from pipeline.plural import counted
from pipeline.pseudonym import PseudonymKeyError, pseudonymiser
from pipeline.settings import settings

NewKeyFileOption = Annotated[
    Path | None,
    typer.Option(
        "--new-key-file",
        metavar="PATH",
        help="Where to write the new key (0600; refused if it exists), for a ledger whose "
        "key is in SHARING_AUDIT_PSEUDONYM_KEY (PostgreSQL). A SQLite ledger's key file is "
        "replaced in place.",
    ),
]
ByOption = Annotated[
    str | None, typer.Option("--by", help="Who rotates the key (default: your login name).")
]


def rotate_key_command(
    db: DbOption = None, by: ByOption = None, new_key_file: NewKeyFileOption = None
) -> None:
    """Replace the ledger's pseudonym key: seal every pupil's identity row again under a
    new random key, record it (a key_rotated entry), and destroy the old key, which made
    the pseudonyms of pupils recorded before migration 0011 (so that erasing them leaves
    no key that remakes them). Run it as the database's owner, with the workers stopped."""
    url = database_url(db)
    ledger = open_ledger(db, create=False)
    configured = settings().pseudonym_key
    beside = None if configured else key_file_for(url)
    if beside is not None and new_key_file is not None:
        fail(f"--new-key-file: this ledger's key is the file {beside}, replaced in place")
    if beside is None and new_key_file is None:
        fail(
            "--new-key-file PATH: say where to write the new key (this ledger's key is "
            "SHARING_AUDIT_PSEUDONYM_KEY, which you then replace everywhere)"
        )
    try:
        finished = settle_key_file(ledger, configured, url)
    except (PseudonymKeyError, LedgerError) as exc:
        fail(str(exc))
    if finished == FINISHED:  # the rotation asked for was made: a second one is not
        print(f"finished the key rotation that had stopped: {beside} holds the new key")
        return
    old = pseudonymiser(pseudonym_key_for(db))
    target = new_key_file if beside is None else pending_key_file(beside)
    assert target is not None
    if target.exists():
        fail(f"{target} exists: a key file is never overwritten; move it away or choose another")
    try:
        with Progress(
            TextColumn("sealing the identity rows under the new key"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),  # standard output says what was done, alone
            transient=True,
        ) as bar:
            task = bar.add_task("reseal", total=None)
            rotated = rotate_key(
                ledger,
                old,
                secrets.token_bytes(KEY_BYTES),
                by=by or getpass.getuser(),
                keep=lambda key: write_new_key_file(target, key),
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except (KeyRefused, RotationRefused) as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"cannot write the new key to {target}: {exc.strerror or exc}")
    except LedgerError as exc:
        fail(f"cannot rotate the key (run it as the database's owner): {exc}")
    if beside is not None:
        try:
            settle_key_file(ledger, None, url)
        except (PseudonymKeyError, LedgerError) as exc:
            fail(f"the rotation is recorded (entry {rotated.seq}), but {exc}: run it again")
    print(rotated_said(rotated, beside, target))


def rotated_said(rotated: Rotated, beside: Path | None, target: Path) -> str:
    """What the rotation did, and what the operator must now do with the old key."""
    said = [
        f"pseudonym key rotated (entry {rotated.seq}): {counted(rotated.resealed, 'identity row')}"
        f" sealed again; {counted(rotated.freed, 'pupil')} recorded before migration 0011 "
        "no longer found by any key the ledger uses",
        f"old key {rotated.old}…, new key {rotated.new}… (fingerprints)",
    ]
    if beside is not None:
        said.append(
            f"{beside} now holds the new key; the old key's file was overwritten. Destroy "
            "every other copy of the old key: backups of the key file, and any copy made."
        )
    else:
        said.append(
            f"the new key is in {target}. Now: set SHARING_AUDIT_PSEUDONYM_KEY to its contents "
            "on every worker and the desk and restart them (those on the old key are refused "
            f"until then); then delete {target}, and destroy every copy of the old key: the "
            "secret store's older versions, .env files, CI variables, shell histories, backups."
        )
    return "\n".join(said)
