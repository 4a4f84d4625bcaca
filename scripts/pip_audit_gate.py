"""Decide CI's outcome from a pip-audit run: fail on known vulnerabilities, never on
"could not reach the vulnerability data" alone, and say plainly which of the two happened.

    pip_audit_gate.py REPORT.json STDERR.txt PIP_AUDIT_EXIT_CODE

pip-audit looks each pinned package up in a vulnerability service over the network. When
the service is out of reach (no network, or a package index mirror whose versions PyPI does
not know) packages come back "skipped": that is reported as NOT AUDITED, loudly, and does not
fail the build. A vulnerability found in any package that could be audited fails it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

UNREACHABLE_SIGNS = ("ConnectionError", "NameResolutionError", "Max retries exceeded",
                     "Temporary failure in name resolution", "timed out", "Network is unreachable",
                     "Could not resolve host", "ProxyError", "SSLError")
TIMED_OUT = 124  # timeout(1)'s exit code: the service never answered


def verdict(report: dict | None, stderr: str, exit_code: int) -> tuple[int, list[str]]:
    """(exit code for CI, lines to print)."""
    if report is None:
        if exit_code == TIMED_OUT or any(sign in stderr for sign in UNREACHABLE_SIGNS):
            return 0, ["pip-audit: NOT AUDITED - the vulnerability service could not be reached "
                       "from this machine (network). This is not a pass; run it where the "
                       "network allows."]
        return 1, ["pip-audit failed without a report (exit %d):" % exit_code, stderr[-2000:]]
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if "skip_reason" in d]
    audited = len(deps) - len(skipped)
    lines = []
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
            lines.append(f"pip-audit: VULNERABLE {dep['name']} {dep.get('version', '?')}: "
                         f"{vuln.get('id')} (fixed in {fixes})")
    if skipped:
        lines.append(f"pip-audit: NOT AUDITED {len(skipped)} of {len(deps)} packages - their "
                     f"vulnerability data could not be fetched here, e.g. "
                     f"{skipped[0].get('skip_reason', '')!r}")
    if vulnerable:
        lines.append(f"pip-audit: FAILED - {len(vulnerable)} vulnerable packages")
        return 1, lines
    if audited:
        lines.append(f"pip-audit: no known vulnerabilities in the {audited} packages audited")
    else:
        lines.append("pip-audit: nothing could be audited here (see above); not failing the "
                     "build for that alone")
    return 0, lines


def main(argv: list[str]) -> int:
    report_path, stderr_path, exit_code = Path(argv[1]), Path(argv[2]), int(argv[3])
    try:
        report = json.loads(report_path.read_text()) if report_path.stat().st_size else None
    except (FileNotFoundError, json.JSONDecodeError):
        report = None
    stderr = stderr_path.read_text(errors="replace") if stderr_path.exists() else ""
    code, lines = verdict(report, stderr, exit_code)
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
