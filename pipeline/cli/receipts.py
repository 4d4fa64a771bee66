"""``sharing-audit audit receipts``: a school's receipts held to the checkpoint its auditor
accepted, so that a log that receipted an event and then left it out is caught by anyone
holding the receipt (as Certificate Transparency catches a log that issued an SCT).

It reads files and asks the log; every decision is
:mod:`pipeline.transparency.completeness`'s."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.audit import StateOption, VkeyOption
from pipeline.cli.exits import fail
from pipeline.cli.held import Held, held_receipts
from pipeline.cli.keys import log_key
from pipeline.cli.proving import LogOverHttp, NoSource, ProofFiles, ProofSource
from pipeline.cli.runnable import command_line
from pipeline.settings import settings
from pipeline.shown import shown_text
from pipeline.transparency.auditor import STATE_FILE, Refused, kept_checkpoint
from pipeline.transparency.completeness import (
    Accepted,
    Finding,
    Served,
    Verdict,
    another_event_at,
    evidence_readme,
    exit_status,
    judge,
    newer_than_accepted,
    open_held,
    tally,
    unproven_beyond,
)
from pipeline.transparency.delivery import ReceiptRefused
from pipeline.transparency.note import Verifier

TOKEN = re.compile(r"[!-~]+")
#: What each outcome means for whoever holds the receipt, said once under the findings.
MEANING = {
    Verdict.REFUSED: "a refused receipt is one the log never signed as it stands: whoever "
    "sent that event was handed a false receipt (or it was altered since) and holds no "
    "proof of delivery",
    Verdict.MISBEHAVIOUR: "the log signed a promise it did not keep: it receipted an entry its "
    "signed checkpoint does not hold as receipted; show the evidence to its operator and "
    "your witnesses",
    Verdict.UNPROVEN: "an unproven receipt could not be checked: the log gave no proof that "
    "checks against your accepted checkpoint; re-run when it does",
    Verdict.PENDING: "a pending receipt is not due yet: re-run after sharing-audit audit verify "
    "accepts a newer checkpoint",
}


def receipts(
    paths: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE|DIR...",
            help="Receipts files (JSON Lines, as emit --receipts writes), signed notes, or "
            "folders searched for *.receipts.jsonl (symbolic links are not followed).",
        ),
    ],
    vkey: VkeyOption,
    state: StateOption,
    log: Annotated[
        str | None,
        typer.Option("--log", help="The log's address, to ask for proofs (with --token)."),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option("--token", envvar="SHARING_AUDIT_TOKEN", help="An auditor's bearer token."),
    ] = None,
    proofs: Annotated[
        Path | None,
        typer.Option("--proofs", help="A folder of proofs instead: SEQ.tlog-proof (and SEQ.leaf)."),
    ] = None,
    mmd: Annotated[
        float | None,
        typer.Option(
            "--mmd",
            min=0,
            help="The log's maximum merge delay, in seconds "
            "(else SHARING_AUDIT_MAX_MERGE_DELAY_SECONDS, else 6 checkpoint periods).",
        ),
    ] = None,
    evidence: Annotated[
        Path | None,
        typer.Option(
            "--evidence",
            help="Where evidence of misbehaviour is written "
            "(else a new receipts-evidence-TIME folder here).",
        ),
    ] = None,
    now: Annotated[int | None, typer.Option("--now", help="The time now, Unix seconds.")] = None,
) -> None:
    """Check each receipt: signed by the log for its origin (else refused), and its entry
    proven at its seq in the checkpoint kept in --state by audit verify. A receipt older
    than the MMD (by the time that checkpoint was accepted) whose entry the checkpoint does
    not hold, or holds another leaf for, is proof the log misbehaved: named, with the
    evidence written out. Exit 1 if any receipt is refused or shows misbehaviour, 2 if
    some could not be proven or read, else 0 (pending receipts are not due yet). Each
    leaf fetched from --log is a read the log records."""
    verifier = log_key(vkey, "--vkey")
    now = int(time.time()) if now is None else now
    accepted = _accepted(state, verifier, now)
    source = _source(log, token, proofs)
    delay = settings().merge_delay if mmd is None else mmd
    if isinstance(source, LogOverHttp):
        _say_if_outgrown(source, accepted, verifier)
    findings: list[tuple[Held, Finding, Served | None]] = []
    checked = _checked(held_receipts(paths), verifier, accepted, source, (delay, now))
    for held, finding, served in checked:
        findings.append((held, finding, served))
        if finding.verdict is not Verdict.PROVEN:
            print(f"{shown_text(held.where)}: {finding.verdict}: {shown_text(_named(finding))}")
    _print_summary([f for _, f, _ in findings])
    wrong = [(w, f, s) for w, f, s in findings if f.verdict is Verdict.MISBEHAVIOUR]
    if wrong:
        folder = _write_evidence(evidence, wrong, accepted)
        print(f"evidence: {shown_text(folder)}")
    raise typer.Exit(exit_status(f for _, f, _ in findings))


def _accepted(state: Path, log: Verifier, now: int) -> Accepted:
    """The checkpoint kept in ``state`` and when it was accepted (its file's time, or now
    if that is later: a receipt is only due by the time the checkpoint was accepted)."""
    try:
        checkpoint = kept_checkpoint(state, log)
    except Refused as exc:
        fail(str(exc))
    if checkpoint is None:
        fail(
            f"no checkpoint accepted in {shown_text(state)}: run "
            f"{command_line('audit', 'verify', 'CHECKPOINT', '--vkey', '...', '--state', '...')} "
            "first, on the log's latest checkpoint"
        )
    kept = state / STATE_FILE
    return Accepted(checkpoint, kept.read_bytes(), min(now, int(kept.stat().st_mtime)))


def _say_if_outgrown(log: LogOverHttp, accepted: Accepted, verifier: Verifier) -> None:
    served = log.latest_checkpoint()
    advice = None if served is None else newer_than_accepted(served, accepted, verifier)
    if advice is not None:
        print(f"note: {advice}")


def _source(log: str | None, token: str | None, proofs: Path | None) -> ProofSource:
    if log is not None and proofs is not None:
        fail("give --log or --proofs, not both")
    if log is not None:
        if not token:
            fail("--log needs --token (an auditor's token), or SHARING_AUDIT_TOKEN")
        if not TOKEN.fullmatch(token):
            fail("--token: a token is printable ASCII, no spaces (as users add printed it)")
        if not log.startswith(("http://", "https://")):
            fail(f"--log {shown_text(log)}: the log's address starts with https://")
        return LogOverHttp(log, token)
    return NoSource() if proofs is None else ProofFiles(proofs)


def _checked(
    held: Iterator[Held],
    log: Verifier,
    accepted: Accepted,
    source: ProofSource,
    clock: tuple[float, int],
) -> Iterator[tuple[Held, Finding, Served | None]]:
    """Each receipt held and what became of it, given the MMD and the time now (``clock``);
    the log is asked once per seq (a duplicate's receipt names the entry that first
    recorded its event)."""
    mmd, now = clock
    asked: dict[int, Served] = {}
    claimed: dict[int, tuple[str, bytes]] = {}
    for one in held:
        if one.unreadable is not None:
            yield one, Finding(Verdict.UNREADABLE, one.unreadable), None
            continue
        if one.refused is not None or one.note is None:
            why = one.refused or "the line holds no receipt"
            verdict = Verdict.REFUSED if one.refused else Verdict.NO_RECEIPT
            yield one, Finding(verdict, why), None
            continue
        try:
            receipt = open_held(one.note, log, one.event_id)
        except ReceiptRefused as exc:
            yield one, Finding(Verdict.REFUSED, str(exc)), None
            continue
        twice = another_event_at(receipt, one.note, claimed)
        if twice is not None:
            yield one, twice, None
            continue
        beyond = unproven_beyond(receipt, accepted, mmd, now=now)
        if beyond is not None:
            yield one, beyond, None
            continue
        if receipt.seq not in asked:
            asked[receipt.seq] = source.served(receipt.seq, accepted.checkpoint.size)
        served = asked[receipt.seq]
        yield one, judge(receipt, accepted, served, log), served


def _named(finding: Finding) -> str:
    receipt = finding.receipt
    if receipt is None:
        return finding.reason
    return f"{finding.reason} (event {receipt.event_id or '-'}, record {receipt.record})"


def _print_summary(findings: list[Finding]) -> None:
    counts = tally(findings)
    checked = sum(counts.values()) - counts[Verdict.UNREADABLE] - counts[Verdict.NO_RECEIPT]
    print(
        f"{checked} receipts checked, {counts[Verdict.PROVEN]} proven, "
        f"{counts[Verdict.PENDING]} pending, {counts[Verdict.REFUSED]} refused, "
        f"{counts[Verdict.MISBEHAVIOUR]} misbehaviour, {counts[Verdict.UNPROVEN]} unproven"
        + (f", {counts[Verdict.UNREADABLE]} unreadable" if counts[Verdict.UNREADABLE] else "")
        + (
            f", {counts[Verdict.NO_RECEIPT]} lines without one"
            if counts[Verdict.NO_RECEIPT]
            else ""
        )
    )
    for verdict, meaning in MEANING.items():
        if counts[verdict]:
            print(f"  {meaning}")


def _write_evidence(
    chosen: Path | None, wrong: list[tuple[Held, Finding, Served | None]], accepted: Accepted
) -> Path:
    """A folder per receipt the log broke its word on: the receipt and the accepted
    checkpoint verbatim, what the log served, and a README saying what they show."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    folder = chosen or Path.cwd() / f"receipts-evidence-{stamp}"
    try:
        folder.mkdir(parents=True, exist_ok=chosen is not None)
        for number, (held, finding, served) in enumerate(wrong, 1):
            seq = finding.receipt.seq if finding.receipt is not None else 0
            one = folder / f"{seq:03d}-seq{seq}"
            one = one if not one.exists() else folder / f"{seq:03d}-seq{seq}-{number}"
            one.mkdir()
            (one / "README.txt").write_text(evidence_readme(finding, accepted, held.where))
            (one / "checkpoint.note").write_bytes(accepted.note)
            (one / "receipt.note").write_bytes(held.note or b"")
            if finding.other is not None:
                (one / "other-receipt.note").write_bytes(finding.other)
            if served is not None and served.proof is not None:
                (one / f"{seq}.tlog-proof").write_bytes(served.proof)
            if served is not None and served.leaf is not None:
                (one / f"{seq}.leaf").write_bytes(served.leaf)
    except OSError as exc:
        fail(f"cannot write the evidence in {shown_text(folder)}: {exc.strerror}", 1)
    return folder
