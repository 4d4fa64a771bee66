"""Everything beside the chain is a projection of it (DESIGN invariant 10): the pupil and
recipient indexes, the register facts' pupil column and the users' roles, schools, expiry,
revocation and tokens. An edit behind the writer's back, by the application's own role or
by the schema's owner, is named by ``ledger verify`` (table, entry or user, what the
ledger says and what the row says) and never believed by a report or the desk."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import TextClause, bindparam, text

from pipeline.engine import Position
from pipeline.ledger.integrity.verification import verify
from pipeline.ledger.reading.queries import Filters, count, entries
from pipeline.ledger.reading.reads import readers_of
from pipeline.ledger.records.entry import EntryKind
from pipeline.ledger.storage.store import PUPIL, Ledger, now_text
from pipeline.ledger.writing.acts import append_act
from pipeline.ledger.writing.ingest import LedgerWriter
from pipeline.ledger.writing.pupils import finder
from pipeline.policy.pack import Policy
from pipeline.pseudonym import pseudonymiser
from pipeline.reports.sar import subject_access
from pipeline.users import Role, add_user, revoke_user, rotate_user, token_hash
from tests.factory import consent_given, line, upn
from tests.integration.breaches import KEY, breach_desk, ledger_with_breaches
from tests.integration.test_ledger_cli import run
from tests.integration.test_ledger_contract import drop_triggers

pytestmark = [pytest.mark.integration, pytest.mark.slow]
#: The number of the pupil of pseudonym ``:k``.
NUMBER = "(SELECT id FROM pupil WHERE pupil_key = :k)"
#: A row of the pupil index naming the pupil of pseudonym ``:k``, filed under their number.
INDEX_ROW = f"INSERT INTO entry_pupil (pupil, seq) VALUES ({NUMBER}, :s)"


def pupil(ledger: Ledger, n: int) -> str:
    """The pseudonym the ledger records pupil ``n`` under."""
    return finder(ledger)(upn(n))


@pytest.fixture
def ledger(db_url: str, policy: Policy) -> Ledger:
    """Three referrals (pupils 1, 2, 3; two breaches), a consent fact for pupil 1, an
    auditor of one school and a trust-wide admin."""
    ledger = ledger_with_breaches(db_url, policy)
    writer = LedgerWriter(ledger, policy, pseudonymiser(KEY))
    writer.write([(line(consent_given(upn(1), ref="C-9")), Position.line("g", 1))])
    add_user(ledger, "root", Role.ADMIN, by="installer")
    add_user(ledger, "aud", Role.AUDITOR, by="root", schools=["100001"])
    return ledger


def run_sql(ledger: Ledger, statement: str, *, owner: bool = False, **values: Any) -> None:
    """``statement`` as the application could run it (no trigger refuses an INSERT, nor
    an UPDATE of app_user), or as the schema's owner with the triggers dropped."""
    with ledger.engine.begin() as connection:
        if owner:
            drop_triggers(connection, ledger.dialect)
        connection.execute(sql(statement), values)


def sql(statement: str) -> TextClause:
    """``statement``, its pupil key ``:k`` bound as the pupils' numbers keep one (a
    pseudonym's bytes on PostgreSQL) where it is theirs."""
    keyed = [name for name in ("k", "other") if f":{name}" in statement]
    if keyed and any(t in statement for t in ("entry_pupil", "UPDATE pupil ", "INTO pupil ")):
        digest = PUPIL.c.pupil_key.type
        return text(statement).bindparams(*(bindparam(n, type_=digest) for n in keyed))
    return text(statement)


def scalar(ledger: Ledger, statement: str, **values: Any) -> Any:
    with ledger.engine.connect() as connection:
        return connection.execute(sql(statement), values).scalar_one()


def seq_naming(ledger: Ledger, pupil: str) -> int:
    return int(
        scalar(
            ledger,
            f"SELECT min(seq) FROM entry_pupil WHERE pupil = {NUMBER} AND seq IN "
            "(SELECT seq FROM ledger_entry WHERE kind = 'decision' AND event_type LIKE "
            "'%referred%')",
            k=pupil,
        )
    )


def failed(ledger: Ledger) -> tuple[int | None, str]:
    """verify's first fault, which the check split over processes must match."""
    with ledger.engine.connect() as connection:
        one_pass = verify(connection)
    with ledger.engine.connect() as connection:
        assert verify(connection, jobs=3, min_range=1) == one_pass
    assert not one_pass.ok, "ledger verify passed"
    return one_pass.fault_seq, str(one_pass.fault)


def test_a_ledger_written_through_the_code_verifies(ledger: Ledger) -> None:
    token = add_user(ledger, "temp", Role.DPO, expires_at="2099-01-01T00:00:00.000000Z")
    rotate_user(ledger, "temp", by="root")
    revoke_user(ledger, "aud", by="root")
    with ledger.engine.connect() as connection:
        assert verify(connection).ok
    assert token


# -- the pupil index ---------------------------------------------------------------------


def test_another_childs_entry_put_into_a_pupils_index_is_named(ledger: Ledger) -> None:
    """Inserted by the application's role, it put a referral into the wrong SAR."""
    seq = seq_naming(ledger, pupil(ledger, 3))
    run_sql(
        ledger,
        INDEX_ROW,
        k=pupil(ledger, 1),
        s=seq,
    )
    fault_seq, fault = failed(ledger)
    assert fault_seq == seq
    assert "entry_pupil" in fault and pupil(ledger, 1) in fault and "does not name" in fault


def test_a_row_removed_from_the_pupil_index_is_named(ledger: Ledger) -> None:
    """Removed by the owner, it hid a breach from the pupil's SAR."""
    seq = seq_naming(ledger, pupil(ledger, 1))
    run_sql(ledger, "DELETE FROM entry_pupil WHERE seq = :s", owner=True, s=seq)
    fault_seq, fault = failed(ledger)
    assert fault_seq == seq
    assert "entry_pupil" in fault and pupil(ledger, 1) in fault and "missing" in fault


def test_a_pupil_index_row_moved_to_another_pupil_is_named(ledger: Ledger) -> None:
    seq = seq_naming(ledger, pupil(ledger, 1))
    run_sql(
        ledger,
        f"UPDATE entry_pupil SET pupil = {NUMBER} WHERE seq = :s",
        owner=True,
        k=pupil(ledger, 3),
        s=seq,
    )
    fault_seq, fault = failed(ledger)
    assert fault_seq == seq and "entry_pupil" in fault


def test_a_pupils_number_given_another_pseudonym_is_named(ledger: Ledger) -> None:
    """Changed by the owner, every entry of the pupil would answer another's SAR."""
    seq = seq_naming(ledger, pupil(ledger, 1))
    run_sql(
        ledger,
        "UPDATE pupil SET pupil_key = :other WHERE pupil_key = :k",
        owner=True,
        k=pupil(ledger, 1),
        other=pupil(ledger, 1)[::-1],
    )
    fault_seq, fault = failed(ledger)
    assert fault_seq is not None and fault_seq <= seq
    assert "entry_pupil" in fault and "does not name" in fault


def test_a_pupil_index_row_under_a_number_no_pupil_has_is_named(ledger: Ledger) -> None:
    """Inserted by the application's role, it would be given to the next pupil named."""
    seq = seq_naming(ledger, pupil(ledger, 3))
    top = int(scalar(ledger, "SELECT max(id) FROM pupil"))
    run_sql(ledger, "INSERT INTO entry_pupil (pupil, seq) VALUES (:n, :s)", n=top + 1, s=seq)
    fault_seq, fault = failed(ledger)
    assert fault_seq == seq
    assert f"pupil number {top + 1}" in fault and "no pupil has that number" in fault


def test_a_pupils_number_no_entry_uses_is_named(ledger: Ledger) -> None:
    """Inserted by the application's role, a number planted far ahead."""
    run_sql(
        ledger,
        "INSERT INTO pupil (id, pupil_key) VALUES (:n, :k)",
        n=2**40,
        k=pupil(ledger, 1)[::-1],
    )
    fault_seq, fault = failed(ledger)
    assert fault_seq == int(scalar(ledger, "SELECT max(seq) FROM ledger_entry")) + 1
    assert f"number {2**40}" in fault and "no entry names" in fault


def test_a_pupil_index_row_claiming_an_entry_not_written_is_named(ledger: Ledger) -> None:
    ahead = int(scalar(ledger, "SELECT max(seq) FROM ledger_entry")) + 5
    run_sql(
        ledger,
        INDEX_ROW,
        k=pupil(ledger, 1),
        s=ahead,
    )
    fault_seq, fault = failed(ledger)
    assert fault_seq == ahead and "entry_pupil" in fault and "no entry" in fault


def test_a_register_fact_filed_under_another_pupil_is_named(ledger: Ledger) -> None:
    """The writer finds a pupil's facts by this column: moved, one child's consent
    would re-decide another's referrals."""
    seq = int(scalar(ledger, "SELECT min(seq) FROM register_fact"))
    run_sql(
        ledger,
        "UPDATE register_fact SET pupil_key = :k WHERE seq = :s",
        owner=True,
        k=pupil(ledger, 3),
        s=seq,
    )
    fault_seq, fault = failed(ledger)
    assert fault_seq == seq
    assert "register_fact" in fault and pupil(ledger, 3) in fault and pupil(ledger, 1) in fault


# -- what reports believe ----------------------------------------------------------------


def test_a_subject_access_report_leaves_out_an_entry_the_index_wrongly_names(
    ledger: Ledger, policy: Policy
) -> None:
    other = seq_naming(ledger, pupil(ledger, 3))
    run_sql(
        ledger,
        INDEX_ROW,
        k=pupil(ledger, 1),
        s=other,
    )
    with ledger.engine.connect() as connection:
        head = int(scalar(ledger, "SELECT max(seq) FROM ledger_entry"))
        report = subject_access(connection, pupil(ledger, 1), policy, head)
    assert report is not None
    assert other not in report["entries"]
    assert seq_naming(ledger, pupil(ledger, 1)) in report["entries"]


def test_a_pupil_search_count_and_readers_leave_out_what_the_index_wrongly_names(
    ledger: Ledger,
) -> None:
    other = seq_naming(ledger, pupil(ledger, 3))
    run_sql(
        ledger,
        INDEX_ROW,
        k=pupil(ledger, 1),
        s=other,
    )
    with ledger.engine.connect() as connection:
        found = [e.seq for e in entries(connection, Filters(pupil_key=pupil(ledger, 1)))]
        counted = count(connection, Filters(pupil_key=pupil(ledger, 1)))
        naming = list(entries(connection, Filters(pupil_key=pupil(ledger, 1))))
        readers_of(connection, pupil(ledger, 1), naming)
    assert other not in found and counted == len(found)


# -- users -------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def last_user_seq(ledger: Ledger) -> int:
    return int(scalar(ledger, "SELECT max(seq) FROM ledger_entry WHERE kind = 'user_action'"))


def test_a_schools_auditor_made_a_trust_admin_behind_the_ledger_is_named_and_refused(
    ledger: Ledger,
) -> None:
    token = add_user(ledger, "eve", Role.AUDITOR, by="root", schools=["100001"])
    added = last_user_seq(ledger)
    client = TestClient(breach_desk(ledger))
    assert client.get("/users", headers=bearer(token)).status_code == 403
    run_sql(ledger, "UPDATE app_user SET role = 'admin', schools = NULL WHERE name = 'eve'")
    fault_seq, fault = failed(ledger)
    assert fault_seq == added
    assert "app_user" in fault and "'eve'" in fault
    assert "role admin" in fault and "auditor" in fault
    assert client.get("/users", headers=bearer(token)).status_code == 401
    assert client.get("/incidents", headers=bearer(token)).status_code == 401


def test_a_school_added_to_a_users_schools_is_named(ledger: Ledger) -> None:
    run_sql(ledger, """UPDATE app_user SET schools = '["100001","100002"]' WHERE name = 'aud'""")
    _, fault = failed(ledger)
    assert "'aud'" in fault and "schools" in fault and "100002" in fault


def test_a_revoked_user_brought_back_behind_the_ledger_is_named_and_refused(
    ledger: Ledger,
) -> None:
    token = add_user(ledger, "gone", Role.DPO, by="root")
    revoke_user(ledger, "gone", by="root")
    run_sql(ledger, "UPDATE app_user SET revoked_at = NULL WHERE name = 'gone'")
    fault_seq, fault = failed(ledger)
    assert fault_seq == last_user_seq(ledger)
    assert "'gone'" in fault and "revoked" in fault
    client = TestClient(breach_desk(ledger))
    assert client.get("/incidents", headers=bearer(token)).status_code == 401


def test_an_expiry_put_off_behind_the_ledger_is_named(ledger: Ledger) -> None:
    add_user(ledger, "temp", Role.DPO, by="root", expires_at="2030-01-01T00:00:00.000000Z")
    run_sql(ledger, "UPDATE app_user SET expires_at = NULL WHERE name = 'temp'")
    _, fault = failed(ledger)
    assert "'temp'" in fault and "expires" in fault and "2030-01-01" in fault


def test_a_token_swapped_behind_the_ledger_is_named_and_refused(ledger: Ledger) -> None:
    """The application's role may update app_user: it could give the admin its own token."""
    run_sql(
        ledger, "UPDATE app_user SET token_hash = :h WHERE name = 'root'", h=token_hash("sa_mine")
    )
    _, fault = failed(ledger)
    assert "'root'" in fault and "token" in fault
    client = TestClient(breach_desk(ledger))
    assert client.get("/users", headers=bearer("sa_mine")).status_code == 401


def test_a_user_inserted_with_no_entry_is_named_and_refused(ledger: Ledger) -> None:
    run_sql(
        ledger,
        "INSERT INTO app_user (name, role, token_hash, created_at) VALUES "
        "('mallory', 'admin', :h, :c)",
        h=token_hash("sa_mallory"),
        c=now_text(),
    )
    fault_seq, fault = failed(ledger)
    assert fault_seq == int(scalar(ledger, "SELECT max(seq) FROM ledger_entry")) + 1
    assert "app_user" in fault and "'mallory'" in fault and "no user_action entry" in fault
    client = TestClient(breach_desk(ledger))
    assert client.get("/users", headers=bearer("sa_mallory")).status_code == 401


def test_a_user_row_removed_is_named(ledger: Ledger) -> None:
    run_sql(ledger, "DELETE FROM app_user WHERE name = 'aud'", owner=True)
    _, fault = failed(ledger)
    assert "'aud'" in fault and "no row" in fault


def test_users_recorded_before_entries_held_their_state_are_rebuilt_as_then_written(
    ledger: Ledger,
) -> None:
    """An older ledger's entries name only what changed: an add its role, schools and
    expiry; a rotate the expiry it set (none: none), clearing a revocation; a revoke."""
    with ledger.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO app_user (name, role, token_hash, created_at, expires_at, "
                "schools, revoked_at) VALUES ('old', 'auditor', :h, :c, NULL, :s, NULL)"
            ),
            {"h": token_hash("sa_old"), "c": now_text(), "s": '["100001"]'},
        )
    older = {"user": "old", "by": "root"}
    append_act(
        ledger,
        EntryKind.USER_ACTION,
        {
            **older,
            "action": "add",
            "role": "auditor",
            "schools": '["100001"]',
            "expires_at": "2030-01-01T00:00:00.000000Z",
        },
    )
    append_act(ledger, EntryKind.USER_ACTION, {**older, "action": "revoke"})
    append_act(ledger, EntryKind.USER_ACTION, {**older, "action": "rotate"})
    with ledger.engine.connect() as connection:
        result = verify(connection)
    assert result.ok, result.fault
    client = TestClient(breach_desk(ledger))
    assert client.get("/incidents", headers=bearer("sa_old")).status_code == 200


def test_ledger_verify_at_the_command_line_names_the_table_the_row_and_exits_1(
    sqlite_url: str, policy: Policy
) -> None:
    ledger = ledger_with_breaches(sqlite_url, policy)
    add_user(ledger, "aud", Role.AUDITOR, by="root", schools=["100001"])
    assert run("ledger", "verify", "--db", sqlite_url).returncode == 0
    run_sql(ledger, "UPDATE app_user SET role = 'admin' WHERE name = 'aud'")
    done = run("ledger", "verify", "--db", sqlite_url)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert (
        "app_user: user 'aud' has role admin, but the ledger (user_action seq 4) says "
        "auditor" in done.stderr
    )


def test_a_user_whose_name_holds_quotes_accents_or_wildcards_is_found_in_the_ledger(
    ledger: Ledger,
) -> None:
    """The desk finds a user's entries by their name as the canonical details hold it."""
    token = add_user(ledger, 'Zoë "Z" O\'Brien_100%\\', Role.DPO, by="root")
    add_user(ledger, "Zoë", Role.ADMIN, by="root")  # its entries must not be taken for hers
    client = TestClient(breach_desk(ledger))
    assert client.get("/incidents", headers=bearer(token)).status_code == 200
    assert client.get("/users", headers=bearer(token)).status_code == 403


# -- desk sessions -----------------------------------------------------------------------


def signed_in_client(ledger: Ledger, token: str) -> TestClient:
    client = TestClient(breach_desk(ledger), follow_redirects=False)
    assert client.post("/desk/signin", data={"token": token}).status_code == 303
    assert client.get("/desk").status_code == 200
    return client


def test_a_desk_session_inserted_behind_the_ledger_is_refused(ledger: Ledger) -> None:
    """The application's role may insert sessions: it could sign itself in as the admin."""
    run_sql(
        ledger,
        "INSERT INTO desk_session (id_hash, user_name, created_at, expires_at) "
        "VALUES (:h, 'root', :c, '2099-01-01T00:00:00.000000Z')",
        h=token_hash("forged-cookie"),
        c=now_text(),
    )
    forged = TestClient(breach_desk(ledger), follow_redirects=False)
    forged.cookies.set("sharing_audit_session", "forged-cookie")
    assert forged.get("/desk").status_code == 303


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE desk_session SET user_name = 'root'",
        "UPDATE desk_session SET expires_at = '2099-01-01T00:00:00.000000Z'",
    ],
)
def test_a_desk_session_changed_behind_the_ledger_is_refused(
    ledger: Ledger, statement: str
) -> None:
    client = signed_in_client(ledger, add_user(ledger, "dpo", Role.DPO, by="root"))
    run_sql(ledger, statement)
    assert client.get("/desk").status_code == 303


def test_a_sign_in_is_recorded_in_the_ledger_and_its_session_works(ledger: Ledger) -> None:
    signed_in_client(ledger, add_user(ledger, "dpo", Role.DPO, by="root"))
    with ledger.engine.connect() as connection:
        signins = [
            e.details
            for e in entries(connection, Filters(kind="user_action"))
            if (e.details or {}).get("action") == "signin"
        ]
        assert verify(connection).ok
    assert [(d["user"], d["by"]) for d in signins if d] == [("dpo", "dpo")]
