"""Untrusted text made safe to show: at a terminal, in a log line or a file an operator
reads (a file's name, an event's field, a form's value)."""

from __future__ import annotations

import re

# C0 and C1 controls (escape sequences start with ESC or CSI), DEL, and the Unicode line
# separators and bidirectional overrides that make text read otherwise than it is; and
# lone surrogates, which is how Python holds the bytes of a file name that is not UTF-8:
# they cannot be written as UTF-8 at all, to a terminal, a log or a reason's file.
_UNSHOWABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def shown_text(value: object) -> str:
    """``value`` as text safe to write to a terminal: every control character written as
    its escape (``\\x1b``), so none moves the cursor, clears the screen or sets a title."""
    return _UNSHOWABLE.sub(_escaped, "-" if value is None else str(value))
