"""The paths an app serves, for tests that must cover every route."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from starlette.routing import Route


def http_routes(app: Any) -> list[tuple[str, set[str]]]:
    """Every ``(path, methods)`` the app serves, including those of included routers
    (newer FastAPI keeps an included router whole rather than copying its routes)."""

    def walk(routes: Iterable[Any], prefix: str) -> Iterator[tuple[str, set[str]]]:
        for route in routes:
            included = getattr(route, "original_router", None)
            if included is not None:
                yield from walk(included.routes, prefix + route.include_context.prefix)
            elif isinstance(route, Route):
                yield prefix + route.path, set(route.methods or ())

    return list(walk(app.routes, ""))
