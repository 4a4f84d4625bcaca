"""The import contracts in .importlinter hold (issue 16): no import cycle between app/'s
packages, dependencies one way (entry points -> areas -> shared services -> models ->
integrations), services enqueue jobs by name, the feature areas independent but for the
payment providers' and the hire lifecycle's interfaces. grimp, which builds the graph,
counts imports inside functions.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--config", str(ROOT / ".importlinter"), "--no-cache"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout
    assert result.stdout.count("KEPT") == 4, result.stdout


@pytest.mark.parametrize("module, tangle", [
    ("models/__init__.py", "from ..admin import staff"),
    # Inside a package too: the payments' ledger, which both providers import, importing one.
    ("payments/ledger.py", "from .card import charges"),
])
def test_a_new_cycle_breaks_the_contracts(tmp_path, module, tangle):
    """The contracts do catch a cycle, even one made by an import inside a function."""
    shutil.copytree(ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path / ".importlinter")
    with open(tmp_path / "app" / module, "a") as f:
        f.write(f"\n\ndef _tangle():\n    {tangle}  # noqa: F401\n")
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--config", str(tmp_path / ".importlinter"), "--no-cache"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "BROKEN" in result.stdout
