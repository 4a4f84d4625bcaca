"""CI's pip-audit gate: real findings fail the build; unreachable data is said, not failed."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "pip_audit_gate", Path(__file__).resolve().parent.parent / "scripts" / "pip_audit_gate.py")
gate = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gate)


def test_a_known_vulnerability_fails_the_build_and_names_the_fix():
    report = {"dependencies": [
        {"name": "flask", "version": "3.1.3", "vulns": []},
        {"name": "jinja2", "version": "2.10", "vulns": [
            {"id": "PYSEC-2019-217", "fix_versions": ["2.10.1"], "description": "sandbox"}]},
        {"name": "stripe", "skip_reason": "Dependency not found on PyPI"}]}
    code, lines = gate.verdict(report, "", 1)
    assert code == 1
    assert any("VULNERABLE jinja2 2.10: PYSEC-2019-217 (fixed in 2.10.1)" in line for line in lines)
    assert any("NOT AUDITED 1 of 3" in line for line in lines)


def test_nothing_reachable_is_reported_loudly_but_does_not_fail():
    report = {"dependencies": [{"name": "flask", "skip_reason": "Dependency not found on PyPI"}]}
    code, lines = gate.verdict(report, "", 0)
    assert code == 0 and "NOT AUDITED 1 of 1" in lines[0]
    code, lines = gate.verdict(None, "requests.exceptions.ConnectionError: Max retries exceeded", 1)
    assert code == 0 and "NOT AUDITED" in lines[0]
    code, lines = gate.verdict(None, "", gate.TIMED_OUT)
    assert code == 0 and "NOT AUDITED" in lines[0]


def test_a_clean_audit_passes_and_a_broken_run_fails():
    report = {"dependencies": [{"name": "flask", "version": "3.1.3", "vulns": []}]}
    assert gate.verdict(report, "", 0) == (0, ["pip-audit: no known vulnerabilities in the 1 "
                                               "packages audited"])
    code, _ = gate.verdict(None, "error: unrecognized arguments: --bogus", 2)
    assert code == 1
