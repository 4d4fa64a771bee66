"""The policy packs that ship with sharing-audit, and loading a pack by name or path."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pipeline.policy.pack import PackError, Policy, parse_pack
from pipeline.policy.schools import Controller, Schools, parse_schools

DEFAULT_PACK = "england-schools"


def shipped_packs() -> list[str]:
    """Names of the packs bundled as package data."""
    return sorted(
        p.name.removesuffix(".yaml")
        for p in resources.files(__package__).iterdir()
        if p.name.endswith(".yaml")
    )


def pack_text(ref: str | None = None) -> tuple[str, str]:
    """The YAML text of a pack and the name to report it by.

    ``ref`` is a shipped pack's name, or a path to a YAML file; None means the default.
    Raises :class:`PackError` when it cannot be read.
    """
    ref = ref or DEFAULT_PACK
    if ref in shipped_packs():
        return resources.files(__package__).joinpath(f"{ref}.yaml").read_text("utf-8"), ref
    path = Path(ref)
    try:
        return path.read_text("utf-8"), str(path)
    except FileNotFoundError:
        known = ", ".join(shipped_packs())
        raise PackError(
            ref, [f"no such file, and not a shipped pack ({known})"], unreadable=True
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PackError(ref, [f"cannot be read: {exc}"], unreadable=True) from None


def load_pack(ref: str | None = None) -> Policy:
    """The compiled policy for a shipped pack name or a YAML file path."""
    text, source = pack_text(ref)
    return parse_pack(text, source)


def load_schools(path: str) -> Schools:
    """The register of schools at ``path``, each school's pack compiled for its own local
    authority (a pack path is taken from the register's folder); :class:`PackError`
    naming the file and what is wrong."""
    register = Path(path)
    try:
        text = register.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise PackError(path, [f"cannot be read: {reason}"], unreadable=True) from None
    compiled: dict[tuple[str, int], Policy] = {}
    policies: dict[str, Policy] = {}
    schools = parse_schools(text, path)
    for school in schools:
        ref = school.pack or DEFAULT_PACK
        if ref not in shipped_packs() and not Path(ref).is_absolute():
            ref = str(register.parent / ref)
        if (ref, school.la) not in compiled:
            pack, source = pack_text(ref)
            compiled[ref, school.la] = parse_pack(pack, source, la=school.la)
        policies[school.urn] = compiled[ref, school.la]
    return Schools(
        {school.urn: school.name for school in schools},
        policies,
        {school.urn: (tuple(school.webhooks), tuple(school.emails)) for school in schools},
        {
            school.urn: Controller(school.urn, school.name, school.address, school.dpo_contact)
            for school in schools
        },
        {school.urn: school.la for school in schools},
    )
