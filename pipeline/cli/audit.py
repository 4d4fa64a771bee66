"""``sharing-audit audit``: what an auditor runs, offline, on what the log handed out.
Nothing here opens the ledger: it checks signatures and proofs (or the auditor's own
mirror of the log's tiles) with the log's verifier key, and keeps the last checkpoint
accepted in the auditor's own folder, against which every later checkpoint and receipt
is held."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.exits import fail
from pipeline.cli.keys import log_key, witness_key
from pipeline.ledger.records.chain import leaf_fault
from pipeline.plural import counted
from pipeline.transparency.auditor import (
    Refused,
    accept,
    accept_mirror,
    accept_receipt,
    given_twice,
)
from pipeline.transparency.mirror import MirrorFolder
from pipeline.transparency.note import Checkpoint, Verifier

audit_app = typer.Typer(
    help="Verify the log without trusting it: checkpoints and receipts, offline.",
    no_args_is_help=True,
)

VkeyOption = Annotated[
    str,
    typer.Option(
        "--vkey",
        metavar="KEY|FILE",
        help="The log's verifier key (the line sharing-audit log vkey prints), or a file "
        "holding it.",
    ),
]
StateOption = Annotated[
    Path,
    typer.Option(
        "--state",
        help="Your folder of the last checkpoint accepted (keep it where the school cannot write).",
    ),
]
ProofOption = Annotated[
    Path | None,
    typer.Option("--proof", help="A consistency proof (sharing-audit log consistency --old N)."),
]
WitnessOption = Annotated[
    list[str] | None,
    typer.Option(
        "--witness",
        metavar="KEY|FILE",
        help="A witness's verifier key, or a file holding it (repeatable, each witness once).",
    ),
]
QuorumOption = Annotated[
    int, typer.Option(help="How many distinct witnesses given must have cosigned.")
]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror}")


def _witnesses(given: list[str] | None, quorum: int) -> list[Verifier]:
    """The witnesses' keys, each once: a witness given twice would count twice toward
    the quorum, so it is a mistake to name, not to tolerate."""
    witnesses = [witness_key(text, "--witness") for text in given or []]
    twice = given_twice(witnesses)
    if twice is not None:
        fail(f"--witness {twice} is given twice (by name or key): each witness counts once")
    if quorum > len(witnesses):
        fail(f"--quorum {quorum} is more than the {len(witnesses)} witnesses given")
    return witnesses


@audit_app.command("verify")
def verify(
    checkpoint: Annotated[Path, typer.Argument(help="The signed checkpoint to accept.")],
    vkey: VkeyOption,
    state: StateOption,
    proof: ProofOption = None,
    tiles: Annotated[
        Path | None,
        typer.Option(
            "--tiles",
            metavar="DIR",
            help="Your mirror of the log's tiles (tile/0/000, tile/entries/000, ... as served "
            "under /log/): check it instead of a --proof.",
        ),
    ] = None,
    start: Annotated[
        Path | None,
        typer.Option(
            "--from",
            metavar="FILE",
            help="With --tiles: the checkpoint you verified last (a signed note); by "
            "default the one kept in --state.",
        ),
    ] = None,
    witness: WitnessOption = None,
    quorum: QuorumOption = 0,
) -> None:
    """Accept CHECKPOINT if the log signed it, QUORUM witnesses cosigned it, and it
    extends the checkpoint kept in --state: proven by --proof, or by your mirror of the
    log's tiles (--tiles), of which only what follows the checkpoint verified last (--from,
    else the one kept) is read. Exit 1 naming the fault."""
    log = log_key(vkey, "--vkey")
    witnesses = _witnesses(witness, quorum)
    if tiles is None and start is not None:
        fail("--from is for checking a mirror: give --tiles DIR too")
    if tiles is not None and proof is not None:
        fail("give --tiles or --proof, not both: the mirror's tiles make the proof")
    note = _read(checkpoint, "the checkpoint")
    if tiles is not None:
        if not tiles.is_dir():
            fail(f"--tiles {tiles}: not a folder")
        given_start = _read(start, "the checkpoint given with --from") if start else None
        _verify_mirror(note, log, state, tiles, given_start, witnesses, quorum)
        return
    given = _read(proof, "the proof") if proof is not None else None
    try:
        accepted = accept(note, log, state, given, witnesses, quorum)
    except Refused as exc:
        fail(f"refused: {exc}", 1)
    print(f"accepted: {accepted.origin} at size {accepted.size}; kept in {state}")


def _verify_mirror(
    note: bytes,
    log: Verifier,
    state: Path,
    tiles: Path,
    start: bytes | None,
    witnesses: list[Verifier],
    quorum: int,
) -> None:
    try:
        accepted, old, read = accept_mirror(
            note, log, state, MirrorFolder(tiles), start, leaf_fault, witnesses, quorum
        )
    except Refused as exc:
        fail(f"refused: {exc}", 1)
    print(f"accepted: {accepted.origin} at size {accepted.size}; kept in {state}")
    print(f"  {_checked_from(old, start is not None, state)}")
    print(
        f"  read from {tiles}: {counted(read.entries, 'new entry', 'new entries')} in "
        f"{counted(read.bundles, 'entry bundle')} and {counted(read.hash_tiles, 'hash tile')}"
    )


def _checked_from(old: Checkpoint | None, given: bool, state: Path) -> str:
    """Where the check started, in words: the auditor should know what was not read."""
    if old is None:
        return f"from the start: no checkpoint kept in {state} (every entry read)"
    which = "given with --from" if given else f"kept in {state}"
    return (
        f"from the checkpoint of size {old.size:,} {which}; not read again: the "
        f"{counted(old.size, 'entry', 'entries')} it covers"
    )


@audit_app.command("receipt")
def receipt(
    receipt_file: Annotated[Path, typer.Argument(metavar="RECEIPT", help="A tlog-proof receipt.")],
    leaf: Annotated[Path, typer.Argument(help="The entry's leaf bytes (sharing-audit log leaf).")],
    vkey: VkeyOption,
    state: StateOption,
    proof: ProofOption = None,
    witness: WitnessOption = None,
    quorum: QuorumOption = 0,
) -> None:
    """Check that the entry whose leaf bytes are LEAF is in the checkpoint RECEIPT names,
    and that checkpoint against the one kept in --state, as audit verify does: the same
    size must have the same root; a larger one needs --proof from the kept size (and is
    then kept); a smaller one needs --proof from its own size to the kept one. Exit 1
    naming the fault."""
    log = log_key(vkey, "--vkey")
    witnesses = _witnesses(witness, quorum)
    data, entry = _read(receipt_file, "the receipt"), _read(leaf, "the leaf")
    given = _read(proof, "the proof") if proof is not None else None
    try:
        checkpoint, kept = accept_receipt(data, entry, log, state, given, witnesses, quorum)
    except Refused as exc:
        fail(f"refused: {exc}", 1)
    where = f"; kept in {state}" if kept else ""
    print(f"included: in {checkpoint.origin} at size {checkpoint.size}{where}")
