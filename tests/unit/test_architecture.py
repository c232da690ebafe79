"""The import rules of docs/architecture.md hold (import-linter, contracts in pyproject.toml).

The pure core imports no I/O library and nothing of the edge; `signaling` never imports
`server`; clients speak only `signaling.protocol`. A second run with a rule the code is
known to break proves the checker actually looks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def lint(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LINT_IMPORTS, "--no-cache", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_the_architecture_import_contracts_are_kept() -> None:
    done = lint()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout


def test_a_broken_rule_is_reported(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["signaling"]\n\n'
        '[[tool.importlinter.contracts]]\nname = "the edge may not use the core (false)"\n'
        'type = "forbidden"\nsource_modules = ["signaling.edge"]\n'
        'forbidden_modules = ["signaling.core"]\n'
    )
    done = lint("--config", str(config))
    assert done.returncode != 0 and "BROKEN" in done.stdout
