"""Stripe's request encoding: `a[b][0][c]=v` form fields <-> nested dicts and lists.

The SDK sends v1 parameters as application/x-www-form-urlencoded with bracketed keys
(`metadata[hire_id]=5`, `line_items[0][price_data][unit_amount]=1200`, `expand[0]=x`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl

_PART = re.compile(r"\[([^\]]*)\]")


def _split(key: str) -> list[str]:
    head = key.split("[", 1)[0]
    return [head, *_PART.findall(key[len(head):])]


def _listify(node: Any) -> Any:
    """Dicts whose keys are all 0..n-1 become lists (Stripe's indexed arrays)."""
    if isinstance(node, dict):
        node = {k: _listify(v) for k, v in node.items()}
        if node and all(k.isdigit() for k in node):
            return [node[k] for k in sorted(node, key=int)]
    return node


def decode(body: str) -> dict[str, Any]:
    """Decode a form body or query string into Stripe's nested parameters (all values str)."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        parts = _split(key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # "a=1&a[b]=2": the later, nested form wins
                node = {}
        last = parts[-1]
        if last == "":  # "a[]=x": append
            last = str(len(node))
        node[last] = value
    return _listify(root)


def as_int(value: Any, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    return int(value)


def as_bool(value: Any) -> bool:
    return str(value).lower() == "true"
