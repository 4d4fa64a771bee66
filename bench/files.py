"""Benchmark: MIS files to contract events, against a bare streaming parse of the same files.

    python bench/files.py [--pupils 10000] [--per-file 20] [--census 2000] [--rounds 3]

Writes a folder of Common Transfer Files (``--pupils`` pupils, ``--per-file`` to a file,
each record with every section a CTF has) and one School Census return of ``--census``
pupils, then times, interleaved round by round (best of ``--rounds``):

- conversion: ``sharing-audit ctf events`` / ``census events`` as the command line runs
  them (the files read with defusedxml, categories mapped through the pack, events
  built and written as JSON Lines), in events and pupils per second;
- the floor: the same files through defusedxml's ``iterparse`` and nothing else.

Target (the file adapters issue): conversion at least 0.5 of the bare parse. The last
line reads ``ctf_ratio=R census_ratio=C``.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project before bench/

import orjson
from defusedxml.ElementTree import iterparse

from pipeline.files.events import file_events
from pipeline.files.gias import Gias
from pipeline.packs import load_pack
from tests.mis_files import CENSUS_MODULES, CTF_SECTIONS, census, census_pupil, ctf, ctf_pupil


def write_files(folder: Path, pupils: int, per_file: int, census_pupils: int) -> list[Path]:
    """The CTFs, then the census return, as an MIS would leave them in its export folder."""
    sections = [xml for xml, _ in CTF_SECTIONS.values()]
    modules = [xml for xml, _ in CENSUS_MODULES.values()]
    paths = []
    for first in range(0, pupils, per_file):
        records = [ctf_pupil(n, *sections) for n in range(first, min(first + per_file, pupils))]
        path = folder / f"8502001_CTF_8502002_{first // per_file:05d}.xml"
        path.write_bytes(ctf(*records))
        paths.append(path)
    path = folder / "8502001_SC3_850LL27_001.XML"
    path.write_bytes(census(*(census_pupil(n, *modules) for n in range(census_pupils))))
    return [*paths, path]


def converted(paths: list[Path]) -> tuple[float, int]:
    """Seconds to turn ``paths`` into JSON Lines events, and how many events."""
    policy, gias = load_pack(), Gias()
    out = io.BytesIO()
    start = time.perf_counter()
    count = 0
    for path in paths:
        for event in file_events(path, policy, gias).events:
            out.write(orjson.dumps(event) + b"\n")
            count += 1
    return time.perf_counter() - start, count


def parsed(paths: list[Path]) -> float:
    """Seconds to stream-parse ``paths`` with defusedxml, doing nothing with what is read."""
    start = time.perf_counter()
    for path in paths:
        with path.open("rb") as stream:
            for _ in iterparse(stream, forbid_dtd=True):
                pass
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pupils", type=int, default=10_000)
    parser.add_argument("--per-file", type=int, default=20)
    parser.add_argument("--census", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-files-") as folder:
        paths = write_files(Path(folder), args.pupils, args.per_file, args.census)
        ctfs, returns = paths[:-1], paths[-1:]
        size = sum(p.stat().st_size for p in paths) / 1e6
        print(f"{len(ctfs)} CTFs, {args.pupils:,} pupils; census {args.census:,}: {size:.1f} MB")
        best: dict[str, float] = {}
        events: dict[str, int] = {}
        for _ in range(args.rounds):
            for name, files in (("ctf", ctfs), ("census", returns)):
                floor = parsed(files)
                seconds, events[name] = converted(files)
                best[f"{name}_floor"] = min(best.get(f"{name}_floor", floor), floor)
                best[name] = min(best.get(name, seconds), seconds)
    pupils = {"ctf": args.pupils, "census": args.census}
    for name in ("ctf", "census"):
        print(
            f"{name}: {events[name] / best[name]:,.0f} events/s, "
            f"{pupils[name] / best[name]:,.0f} pupils/s ({best[name]:.3f} s); bare parse "
            f"{pupils[name] / best[f'{name}_floor']:,.0f} pupils/s ({best[f'{name}_floor']:.3f} s)"
        )
    ratios = {name: best[f"{name}_floor"] / best[name] for name in ("ctf", "census")}
    met = all(r >= 0.5 for r in ratios.values())
    print(f"target: conversion >= 0.5 of the bare parse -> {'met' if met else 'NOT met'}")
    print(f"ctf_ratio={ratios['ctf']:.2f} census_ratio={ratios['census']:.2f}")


if __name__ == "__main__":
    main()
