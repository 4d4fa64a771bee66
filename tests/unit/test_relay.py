"""The alert relay: one alert that cannot be sent never holds back the others."""

from __future__ import annotations

import asyncio
from typing import Any

from agents.relay import STRIKES, AlertRelay
from pipeline.ledger.writing.outbox import SENT, SET_ASIDE, Due, PendingAlert
from schemas.alerts import MAX_ALERT_BYTES, summary_of


class MessageSizeTooLargeError(Exception):
    """Named as kafka clients name the broker's refusal of one record."""


class Outbox:
    """The sink's outbox calls, in memory: pending alerts until marked."""

    def __init__(self, *alerts: PendingAlert) -> None:
        self.pending = {a.seq: a for a in alerts}
        self.marked: dict[int, str] = {}

    async def due_alerts(self, hold_seconds: float, limit: int) -> Due:
        return Due(sorted(self.pending.values(), key=lambda a: a.seq)[:limit], [])

    async def mark_relayed(self, seqs: list[int], status: str) -> None:
        for seq in seqs:
            self.pending.pop(seq, None)
            self.marked[seq] = status


class Topic:
    """A topic that refuses the records ``refuse`` names, or all when ``down``."""

    def __init__(self, refuse: dict[int, Exception] | None = None, down: bool = False) -> None:
        self.refuse, self.down = refuse or {}, down
        self.sent: list[int] = []

    async def send(self, key: bytes, value: bytes, headers: Any) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        seq = int(key)
        if self.down:
            future.set_exception(ConnectionError("broker away"))
        elif seq in self.refuse:
            future.set_exception(self.refuse[seq])
        else:
            self.sent.append(seq)
            future.set_result(None)
        return future


def alert(seq: int, size: int = 100) -> PendingAlert:
    return PendingAlert(seq, "high", b"x" * size)


def rounds(relay: AlertRelay, n: int) -> None:
    async def go() -> None:
        for _ in range(n):
            await relay.round()

    asyncio.run(go())


def test_an_alert_over_the_size_limit_is_set_aside_and_the_later_ones_sent() -> None:
    outbox, topic = Outbox(alert(1, MAX_ALERT_BYTES + 1), alert(2), alert(3)), Topic()
    rounds(AlertRelay(outbox, topic, 0), 1)  # type: ignore[arg-type]
    assert topic.sent == [2, 3]
    assert outbox.marked == {1: SET_ASIDE, 2: SENT, 3: SENT}


def test_an_alert_the_broker_refuses_for_its_size_is_set_aside_at_once() -> None:
    outbox = Outbox(alert(1), alert(2))
    topic = Topic(refuse={1: MessageSizeTooLargeError()})
    rounds(AlertRelay(outbox, topic, 0), 1)  # type: ignore[arg-type]
    assert outbox.marked == {1: SET_ASIDE, 2: SENT}


def test_an_alert_failing_alone_round_after_round_is_set_aside_after_its_strikes() -> None:
    outbox = Outbox(alert(1))
    topic = Topic(refuse={1: ValueError("odd")})
    relay = AlertRelay(outbox, topic, 0)  # type: ignore[arg-type]
    for n in range(2, 2 + STRIKES):
        outbox.pending[n] = alert(n)  # others keep arriving and going through
        rounds(relay, 1)
    assert outbox.marked[1] == SET_ASIDE
    assert all(outbox.marked[n] == SENT for n in range(2, 2 + STRIKES))


def test_nothing_is_set_aside_while_the_broker_takes_nothing() -> None:
    outbox, topic = Outbox(alert(1), alert(2)), Topic(down=True)
    rounds(AlertRelay(outbox, topic, 0), 3 * STRIKES)  # type: ignore[arg-type]
    assert outbox.marked == {} and set(outbox.pending) == {1, 2}


def test_a_reason_about_many_pupils_is_summarised_with_a_count() -> None:
    reason = "; ".join(f"no consent for pupils[{n}]" for n in range(1_500))
    summary = summary_of(reason)
    assert summary.endswith("; and 1,490 more like them")
    assert summary.count("pupils[") == 10


def test_a_short_reason_is_left_whole() -> None:
    assert summary_of("a; b") == "a; b"


def test_an_alert_that_failed_then_went_out_is_not_remembered() -> None:
    outbox = Outbox(alert(1), alert(2))
    topic = Topic(refuse={1: ValueError("odd, once")})
    relay = AlertRelay(outbox, topic, 0)  # type: ignore[arg-type]
    rounds(relay, 1)
    assert relay.strikes == {1: 1}
    topic.refuse.clear()
    rounds(relay, 1)
    assert outbox.marked[1] == SENT and relay.strikes == {}
