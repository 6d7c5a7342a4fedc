"""Nothing in the repository reads the project's shared folder beside the clone.

The project's shared corpus (OCDS schemas and examples, the design document)
sits in a folder named ``shared`` next to the original working copy. A clone
anywhere else has no such folder, so every file the code, tests, benchmarks,
migrations, CI or build use must come from inside the repository: the OCDS data
the tests use are vendored in tests/vectors/ocds/ (SOURCES.md), the design
document in docs/DESIGN.md.

The rule, applied to every file ``git ls-files`` lists under app/, ledger/,
tests/, bench/, migrations/, contracts/ and .ci/, and to README.md,
pyproject.toml, setup.py, Dockerfile, hardhat.config.js and package.json, flags a line
that names that folder as a path:

- a relative path that climbs out of the repository into it: ``..`` then a
  slash or backslash then ``shared`` (``../shared/DESIGN.md``,
  ``../../shared``);
- a quoted path part that is ``shared`` or starts with ``shared/``: how Python
  and JavaScript join a path to it (``parents[3] / "shared"``,
  ``path.join(root, "..", "shared")``, ``"shared/data/ocds/..."``).

The word in prose ("a shared lock", "one shared socket"), identifiers such as
``pg_advisory_lock_shared`` and other folders (``../shared-notes``) are not
that path, and pass. This file is left out of the scan: it spells the patterns
out to explain them; the last two tests check the rule on examples.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
SCANNED_DIRS = ("app", "ledger", "tests", "bench", "migrations", "contracts", ".ci")
SCANNED_FILES = (
    "README.md",
    "pyproject.toml",
    "setup.py",
    "Dockerfile",
    "hardhat.config.js",
    "package.json",
)

THIS_FILE = Path(__file__).resolve().relative_to(REPO).as_posix()

OUTSIDE_PATH = re.compile(
    # ../shared, ..\shared, ../../shared (its last step out matches); not ../shared-notes.
    r"\.\.[/\\]shared(?![\w-])"
    # "shared" or 'shared' as a whole quoted path part, or a quoted path starting shared/.
    r"""|["']shared(?:["']|[/\\])"""
)


def scanned_paths() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--", *SCANNED_DIRS, *SCANNED_FILES],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    return [name for name in listed.split("\0") if name and name != THIS_FILE]


def offending_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if OUTSIDE_PATH.search(line)]


def test_no_tracked_file_reads_the_shared_folder_outside_the_repository() -> None:
    paths = scanned_paths()
    # The listing itself works (an empty one would pass anything).
    assert "tests/conftest.py" in paths and "pyproject.toml" in paths
    found: dict[str, list[str]] = {}
    for name in paths:
        path = REPO / name
        if not path.is_file():  # deleted in the working tree, not yet in the index
            continue
        lines = offending_lines(path.read_bytes().decode("utf-8", errors="replace"))
        if lines:
            found[name] = lines
    assert found == {}, (
        "these files name the shared folder beside the clone, which a clone elsewhere"
        " lacks; vendor what they need into the repository (tests/vectors/, docs/)"
    )


@pytest.mark.parametrize(
    "line",
    [
        "[design](../shared/DESIGN.md)",
        "type ..\\shared\\data\\x.csv",
        "ROOT = Path(__file__).parents[3] / 'shared' / 'data' / 'ocds'",
        'X = Path(__file__).parents[2].parent / "shared" / "data"',
        'X = root / "shared/data/ocds/schema-1.1.5/codelist-currency.csv"',
        'path.join(__dirname, "..", "shared", "data")',
        "COPY ../../shared /srv/data",
    ],
)
def test_the_rule_flags_paths_to_the_folder(line: str) -> None:
    assert offending_lines(line) == [line]


@pytest.mark.parametrize(
    "line",
    [
        "with uvicorn's one shared socket, the kernel hands connections out",
        "SELECT pg_advisory_lock_shared(1)",
        '"""Shared fixtures: a real Hardhat node per test session."""',
        'mode = "shared_cache"',
        "../shared-notes/x.md is another folder",
    ],
)
def test_the_rule_passes_the_word_in_prose_and_names(line: str) -> None:
    assert offending_lines(line) == []
