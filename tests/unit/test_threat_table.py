"""docs/security.md's threat table cites tests that exist, by path and name."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "docs" / "security.md"
HEADING = "## Threats and their tests"
CITATION = re.compile(r"`?(tests/[\w/.-]+\.py)::(\w+)`?")


def table_rows() -> list[list[str]]:
    """The cells of each row of the table under HEADING (header and rule left out)."""
    text = SECURITY.read_text(encoding="utf-8")
    assert HEADING in text, f"{SECURITY} has no section {HEADING!r}"
    section = text.split(HEADING, 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in section.splitlines() if line.strip().startswith("|")]
    assert len(lines) > 2, f"no table under {HEADING!r}"
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["threat", "what stops it", "test"], header
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def defines(path: Path, name: str) -> bool:
    pattern = re.compile(rf"^(async )?def {re.escape(name)}\(", re.M)
    return bool(pattern.search(path.read_text(encoding="utf-8")))


def test_every_threat_names_what_stops_it_and_a_test() -> None:
    rows = table_rows()
    assert len(rows) >= 10
    for row in rows:
        assert len(row) == 3, f"a row needs three cells: {row}"
        threat, stops, tests = row
        assert threat and stops, row
        assert CITATION.search(tests), f"{threat!r} cites no test (path::name)"


def test_every_cited_test_exists() -> None:
    missing = []
    for threat, _, tests in table_rows():
        for path, name in CITATION.findall(tests):
            file = ROOT / path
            if not file.is_file() or not defines(file, name):
                missing.append(f"{path}::{name} (for {threat!r})")
    assert not missing, "docs/security.md cites tests that do not exist:\n" + "\n".join(missing)


def test_the_checker_reads_citations_and_finds_definitions(tmp_path: Path) -> None:
    cell = "`tests/a/test_x.py::test_one`<br>`tests/b/test_y.py::test_two`"
    assert CITATION.findall(cell) == [("tests/a/test_x.py", "test_one"),
                                      ("tests/b/test_y.py", "test_two")]
    source = tmp_path / "test_x.py"
    source.write_text("async def test_one(api) -> None:\n    pass\n"
                      "def test_one_more() -> None:\n    pass\n")
    assert defines(source, "test_one")
    assert defines(source, "test_one_more")
    assert not defines(source, "test_on")
