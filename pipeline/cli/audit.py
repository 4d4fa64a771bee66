"""``sharing-audit audit``: what an auditor runs, offline, on what the log handed out.
Nothing here opens the ledger: it checks signatures and proofs with the log's verifier
key, and keeps the last checkpoint accepted in the auditor's own folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.exits import fail
from pipeline.transparency.auditor import Refused, accept
from pipeline.transparency.note import NoteError, Verifier
from pipeline.transparency.receipt import ReceiptError, check_receipt

audit_app = typer.Typer(
    help="Verify the log without trusting it: checkpoints and receipts, offline.",
    no_args_is_help=True,
)

VkeyOption = Annotated[Path, typer.Option("--vkey", help="A file holding the log's verifier key.")]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        fail(f"cannot read {what} {path}: {exc.strerror}")


def _verifier(text: str, where: str) -> Verifier:
    try:
        return Verifier.parse(text)
    except NoteError as exc:
        fail(f"{where}: {exc}")


@audit_app.command("verify")
def verify(
    checkpoint: Annotated[Path, typer.Argument(help="The signed checkpoint to accept.")],
    vkey: VkeyOption,
    state: Annotated[
        Path, typer.Option("--state", help="Your folder of the last checkpoint accepted.")
    ],
    proof: Annotated[
        Path | None, typer.Option("--proof", help="A consistency proof from the kept checkpoint.")
    ] = None,
    witness: Annotated[
        list[str] | None, typer.Option("--witness", help="A witness's verifier key (repeatable).")
    ] = None,
    quorum: Annotated[int, typer.Option(help="How many of the witnesses must have cosigned.")] = 0,
) -> None:
    """Accept CHECKPOINT if the log signed it, QUORUM witnesses cosigned it, and it
    extends the checkpoint kept in --state (proven by --proof); exit 1 naming the fault."""
    log = _verifier(_read(vkey, "the verifier key").decode("utf-8", "replace"), str(vkey))
    witnesses = [_verifier(text, "--witness") for text in witness or []]
    if quorum > len(witnesses):
        fail(f"--quorum {quorum} is more than the {len(witnesses)} witnesses given")
    note = _read(checkpoint, "the checkpoint")
    given = _read(proof, "the proof") if proof is not None else None
    try:
        accepted = accept(note, log, state, given, witnesses, quorum)
    except Refused as exc:
        fail(f"refused: {exc}", 1)
    print(f"accepted: {accepted.origin} at size {accepted.size}; kept in {state}")


@audit_app.command("receipt")
def receipt(
    receipt_file: Annotated[Path, typer.Argument(metavar="RECEIPT", help="A tlog-proof receipt.")],
    leaf: Annotated[Path, typer.Argument(help="The entry's leaf bytes (sharing-audit log leaf).")],
    vkey: VkeyOption,
) -> None:
    """Check that the entry whose leaf bytes are LEAF is in the checkpoint RECEIPT names."""
    log = _verifier(_read(vkey, "the verifier key").decode("utf-8", "replace"), str(vkey))
    try:
        checkpoint = check_receipt(_read(receipt_file, "the receipt"), _read(leaf, "the leaf"), log)
    except ReceiptError as exc:
        fail(f"refused: {exc}", 1)
    print(f"included: in {checkpoint.origin} at size {checkpoint.size}")
