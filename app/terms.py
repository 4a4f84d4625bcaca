"""The terms of hire: a versioned text kept in the repository (docs/terms/<version>.md).

Shared by the online check-in (the customer reads and accepts a version) and the rental
agreement (which prints the version the customer accepted). A new version is a new file and
a new TERMS_VERSION; old versions stay, so what someone accepted can always be shown again.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from flask import current_app

VERSION_RE = re.compile(r"^v[0-9]{1,4}$")


class UnknownTerms(LookupError):
    """No such version of the terms in TERMS_DIR (a deployment mistake when it is the current
    TERMS_VERSION: the hand-over and the check-in refuse rather than print a broken agreement)."""


@dataclass(frozen=True)
class Terms:
    version: str
    text: str  # Markdown, as kept in the repository

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()

    @property
    def paragraphs(self) -> list[str]:
        """The text as paragraphs (blank-line separated, lines joined), title first: how the
        rental agreement prints it."""
        blocks = [" ".join(line.strip() for line in block.splitlines())
                  for block in self.text.strip().split("\n\n")]
        return [b.lstrip("# ").replace("**", "") for b in blocks if b]

    @property
    def title(self) -> str:
        first = self.text.lstrip().splitlines()[0] if self.text.strip() else ""
        return first.lstrip("# ").strip() or f"Terms of hire ({self.version})"


def load_terms(version: str | None = None) -> Terms:
    """The terms of `version` (default: the current TERMS_VERSION)."""
    version = version or current_app.config["TERMS_VERSION"]
    if not VERSION_RE.match(version):
        raise UnknownTerms(version)
    path = Path(current_app.config["TERMS_DIR"]) / f"{version}.md"
    try:
        return Terms(version, path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UnknownTerms(version) from None


def current_terms() -> Terms:
    return load_terms()
