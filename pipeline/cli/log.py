"""``sharing-audit log``: the verifiable log, for its operator. The verifier key to hand
out, checkpoints, an entry's leaf bytes, inclusion receipts and consistency proofs, in
the C2SP formats that other tools read."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline.cli.exits import fail
from pipeline.cli.options import DbOption, database_url, open_ledger, reading
from pipeline.cli.runnable import command_line
from pipeline.ledger.log.checkpoints import (
    LogKeyError,
    Signed,
    at_size,
    latest,
    log_signer,
    sign_if_grown,
)
from pipeline.ledger.log.origin import LogOriginError, log_origin
from pipeline.ledger.log.witnessing import current, publish, witnesses_from
from pipeline.ledger.storage.store import Ledger
from pipeline.ledger.storage.tree import (
    TreeIncomplete,
    consistency_proof,
    inclusion_proof,
    leaf_bytes,
)
from pipeline.settings import settings
from pipeline.transparency.auditor import ConsistencyProof
from pipeline.transparency.note import Signer
from pipeline.transparency.receipt import receipt_for

log_app = typer.Typer(
    help="The verifiable log: verifier key, checkpoints, leaves and proofs (C2SP formats).",
    no_args_is_help=True,
)


def signer_for(db: str | None) -> Signer:
    config = settings()
    url = database_url(db)
    try:
        return log_signer(config.log_key, log_origin(url, config.log_origin), url)
    except (LogKeyError, LogOriginError) as exc:
        fail(str(exc))


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _latest_or_fail(ledger: Ledger) -> Signed:
    """The checkpoint served as current: the latest, or with SHARING_AUDIT_WITNESS_QUORUM
    set, the latest that many witnesses cosigned."""
    quorum = settings().witness_quorum
    with reading(ledger) as connection:
        signed = current(connection, quorum)
    if signed is None and quorum:
        fail(f"no checkpoint has {quorum} cosignatures yet: run {command_line('log', 'publish')}")
    if signed is None:
        fail(f"the log has signed no checkpoint yet: run {command_line('log', 'checkpoint')}")
    return signed


@log_app.command("vkey")
def vkey(db: DbOption = None) -> None:
    """The log's verifier key, one line: give it to auditors and witnesses."""
    print(signer_for(db).verifier.vkey())


@log_app.command("checkpoint")
def checkpoint(db: DbOption = None) -> None:
    """Sign a checkpoint of the tree if it grew, and print the latest (with cosignatures)."""
    ledger = open_ledger(db)
    unwritten = _sign(ledger, signer_for(db))
    with reading(ledger) as connection:
        if latest(connection) is None:  # nothing was signed, so the tree has no leaf
            fail("the ledger has no entries: there is nothing to sign yet")
    _write(_latest_or_fail(ledger).with_cosignatures())
    if unwritten:
        fail(unwritten)


def _sign(ledger: Ledger, signer: Signer) -> str | None:
    """Sign a checkpoint if the tree grew; why it could not be written to
    SHARING_AUDIT_CHECKPOINT_DIR, if it could not (it is signed and kept all the same)."""
    folder = settings().checkpoint_dir
    try:
        sign_if_grown(ledger, signer, folder)
    except TreeIncomplete as exc:
        fail(f"{exc}: run {command_line('db', 'upgrade')}")
    except LogKeyError as exc:
        fail(str(exc))
    except OSError as exc:
        why = exc.strerror or str(exc)
        return f"SHARING_AUDIT_CHECKPOINT_DIR {folder}: the checkpoint was not written there: {why}"
    return None


@log_app.command("leaf")
def leaf(
    seq: Annotated[int, typer.Argument(help="The entry's sequence number.")], db: DbOption = None
) -> None:
    """Entry SEQ's leaf bytes, exactly (the canonical JSON its hashes cover)."""
    with reading(open_ledger(db, create=False)) as connection:
        data = leaf_bytes(connection, seq)
    if data is None:
        fail(f"the ledger has no entry {seq}")
    _write(data)


@log_app.command("prove")
def prove(
    seq: Annotated[int, typer.Argument(help="The entry's sequence number.")],
    size: Annotated[
        int | None, typer.Option(help="The checkpoint's size (default: the latest).")
    ] = None,
    db: DbOption = None,
) -> None:
    """A C2SP tlog-proof receipt: entry SEQ is in the checkpoint of size N."""
    ledger = open_ledger(db, create=False)
    signed = _checkpoint_of(ledger, size)
    if not 1 <= seq <= signed.checkpoint.size:
        fail(f"entry {seq} is not in the checkpoint of size {signed.checkpoint.size}")
    with reading(ledger) as connection:
        proof = inclusion_proof(connection, seq - 1, signed.checkpoint.size)
    _write(receipt_for(seq - 1, proof, signed.with_cosignatures()))


@log_app.command("consistency")
def consistency(
    old: Annotated[int, typer.Option("--old", help="The size of the tree to prove extended.")],
    db: DbOption = None,
) -> None:
    """``old N``, the consistency proof to the latest checkpoint, a blank line and that
    checkpoint: the body a witness's add-checkpoint takes."""
    ledger = open_ledger(db, create=False)
    signed = _latest_or_fail(ledger)
    if not 0 <= old <= signed.checkpoint.size:
        fail(f"--old {old} is larger than the latest checkpoint ({signed.checkpoint.size})")
    with reading(ledger) as connection:
        proof = consistency_proof(connection, old, signed.checkpoint.size)
    _write(ConsistencyProof(old, tuple(proof)).encode(signed.note))


def _checkpoint_of(ledger: Ledger, size: int | None) -> Signed:
    if size is None:
        return _latest_or_fail(ledger)
    with reading(ledger) as connection:
        signed = at_size(connection, size)
    if signed is None:
        fail(f"the log signed no checkpoint of size {size}")
    return signed


@log_app.command("publish")
def publish_now(db: DbOption = None) -> None:
    """Sign a checkpoint if the tree grew and send the latest to the witnesses in
    SHARING_AUDIT_WITNESSES, all at once, each given SHARING_AUDIT_WITNESS_DEADLINE_SECONDS
    (default 5) per request; exit 1 naming each witness that refused it or did not
    cosign it, and why."""
    config = settings()
    try:
        witnesses = witnesses_from(config.witnesses)
    except ValueError as exc:
        fail(f"SHARING_AUDIT_WITNESSES: {exc}")
    if not witnesses:
        fail('no witnesses: set SHARING_AUDIT_WITNESSES to [{"url": ..., "vkey": ...}]')
    ledger = open_ledger(db)
    unwritten = _sign(ledger, signer_for(db))
    with reading(ledger) as connection:
        signed = latest(connection)
    if signed is None:
        fail("the ledger is empty: there is nothing to publish")
    failed = unwritten is not None
    if unwritten:
        print(unwritten, file=sys.stderr)
    for outcome in publish(ledger, signed, witnesses, config.witness_deadline_seconds):
        name = outcome.witness.verifier.name
        if outcome.line is not None:
            print(f"{name}: cosigned size {signed.checkpoint.size}")
        else:
            failed = True
            verb = "REFUSED" if outcome.refused else "not cosigned"
            print(f"{name}: {verb} size {signed.checkpoint.size}: {outcome.why}", file=sys.stderr)
    if failed:
        raise typer.Exit(1)
