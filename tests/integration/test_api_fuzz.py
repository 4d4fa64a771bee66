"""schemathesis against the published OpenAPI schema: no request makes a server error.

Requests are made as the DPO, so that the actions' bodies and the transitions behind them
are reached, not only the 401 in front of them. (The schemathesis pytest plugin's lazy
loading does not work with this pytest, so each operation's strategy is driven here.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Err

from pipeline.policy.pack import Policy
from pipeline.users import Role, add_user
from tests.integration.breaches import breach_desk, ledger_with_breaches

pytestmark = pytest.mark.integration


@pytest.mark.slow  # schemathesis drives every operation
def test_no_request_to_any_operation_makes_a_server_error(sqlite_url: str, policy: Policy) -> None:
    ledger = ledger_with_breaches(sqlite_url, policy)
    headers = {"Authorization": f"Bearer {add_user(ledger, 'dpo', Role.DPO)}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", breach_desk(ledger), headers=headers)
    operations = []
    for result in schema.get_all_operations():
        if isinstance(result, Err):  # the API's own description does not load
            raise result.err()
        operations.append(result.ok())
    assert len(operations) >= 8
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
        def no_server_error(case: Any) -> None:
            response = case.call(headers=headers)
            assert response.status_code < 500, f"{case.method} {case.path}: {response.text}"

        no_server_error()
