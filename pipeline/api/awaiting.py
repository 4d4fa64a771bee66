"""The records awaiting a receipt, as the desk shows them: looked up at the broker the
desk's process knows (SHARING_AUDIT_BROKER), at most every few seconds, one look at a
time, each with clients of its own closed after it (the app has no hook to close clients
held open, and a client left open keeps calling a broker that has gone); a page never
waits on more than one look, and a desk that knows no broker says it cannot tell."""

from __future__ import annotations

import threading
import time
from typing import Any

from pipeline.settings import Settings
from pipeline.transport.backlog import awaiting_receipts, in_words

#: Seconds a look at the broker is shown before the next page load looks again.
FRESH_SECONDS = 5.0
NO_BROKER = "cannot tell without a broker: set SHARING_AUDIT_BROKER where the desk runs"
#: What a reader confined to some schools sees instead: the figure counts every school's
#: records, and one school's people see nothing of another's (DESIGN.md, invariant 8).
ONE_SCHOOL = "shown to those who serve every school: it counts every school's records"
_MAKING = threading.Lock()


class AwaitingFigure:
    """The figure for one app, kept fresh for :data:`FRESH_SECONDS`."""

    def __init__(self, config: Settings) -> None:
        self.config = config
        self._looking = threading.Lock()
        self._bootstrap = ""
        self._said = ""
        self._at = -FRESH_SECONDS

    def said(self, bootstrap: str | None) -> str:
        """What awaits a receipt at ``bootstrap``, in words."""
        if not bootstrap:
            return NO_BROKER
        with self._looking:
            fresh = time.monotonic() - self._at < FRESH_SECONDS
            if not (fresh and bootstrap == self._bootstrap):
                seen = awaiting_receipts(self.config.kafka(bootstrap))
                self._said = in_words(seen, bootstrap)
                self._bootstrap, self._at = bootstrap, time.monotonic()
            return self._said


def awaiting_said(state: Any) -> str:
    """The figure for the app whose ``state`` is given (made on its first page)."""
    with _MAKING:
        figure = getattr(state, "awaiting_figure", None)
        if figure is None:
            figure = state.awaiting_figure = AwaitingFigure(state.settings)
    return str(figure.said(state.settings.broker))
