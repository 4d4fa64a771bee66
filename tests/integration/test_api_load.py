"""Many clients at once, on both databases: every request is answered, none with a 5xx.

Once, 20 clients on SQLite failed requests with 500 after 30-second waits, and 50 on
PostgreSQL stalled the server: a request held one connection while it waited for another.
"""

from __future__ import annotations

import pytest

from pipeline.incidents.desk import incidents
from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from tests.integration.load import audit_calls, load
from tests.integration.serving import served_by_cli
from tests.integration.year import KEY, ledger_of_year

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_twenty_then_fifty_clients_get_no_server_error(db_url: str, policy: Policy) -> None:
    year = ledger_of_year(db_url, policy, pupils=200)
    token = add_user(year.ledger, "load-dpo", Role.DPO)
    with year.ledger.engine.connect() as connection:
        known = sorted(incidents(connection))
    # Served as deployed, in processes of its own: the clients' threads here would
    # otherwise share one interpreter with the server.
    with served_by_cli(db_url, {"SHARING_AUDIT_PSEUDONYM_KEY": KEY.hex()}) as address:
        for clients in (20, 50):
            answers = load(address, token, audit_calls(year.upns(), known), clients, total=1_000)
            statuses = answers.statuses()
            assert sum(statuses.values()) == 1_000
            assert not {s for s in statuses if s >= 500}, (clients, statuses)
    year.ledger.engine.dispose()
