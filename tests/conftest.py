from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from pipeline.engine import Engine
from pipeline.packs import load_pack
from pipeline.policy.pack import Policy
from schemas.decisions import Decision
from tests.factory import line

SHARED = Path(__file__).resolve().parents[2] / "shared"

# make test-fast, the quick check of every change, runs with --hypothesis-profile=fast: a
# fifth of the examples for each property that sets no count of its own. make test and CI
# try Hypothesis's default hundred.
settings.register_profile("fast", max_examples=20)


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_pack()


@pytest.fixture
def decide_all(policy: Policy) -> Callable[..., list[Decision]]:
    """Run events through a fresh engine; the final decision of each, in input order."""

    def run(*events: dict[str, Any]) -> list[Decision]:
        engine = Engine(policy)
        for position, event in enumerate(events):
            engine.process(line(event), position)
        out = []
        for event in events:
            decision = engine.current(event["id"])
            assert decision is not None
            out.append(decision)
        return out

    return run


@pytest.fixture
def last(decide_all: Callable[..., list[Decision]]) -> Callable[..., Decision]:
    """The final decision of the last event, after all the ones before it."""

    def run(*events: dict[str, Any]) -> Decision:
        return decide_all(*events)[-1]

    return run


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "contract" / "events-v1.md").exists():
        pytest.skip(f"the shared/ folder with the contract is not beside the project ({SHARED})")
    return SHARED
