"""Accessibility and layout checks in real Chromium (issue 17), shared by the browser tests
and `scripts/screenshots`.

- `axe_violations(page)`: axe-core's WCAG 2.0/2.1/2.2 A and AA violations on the page as it
  is now, as {rule id: (impact, number of elements)}.
- `sideways_overflow(page)`: how many CSS pixels the document is wider than the viewport
  (0 when nothing scrolls sideways).
- `SIZES`, `SCHEMES`: the three screens and two colour schemes every page is checked at.
"""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page

AXE = Path(__file__).parent / "node_modules" / "axe-core" / "axe.min.js"
WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]
BLOCKING_IMPACTS = ("serious", "critical")
SIZES = [(390, 844), (820, 1180), (1366, 900)]  # phone, tablet portrait, laptop
SCHEMES = ["light", "dark"]

_axe_source: str | None = None


def load_axe(page: Page) -> None:
    """Put axe-core into the page through DevTools (the page's strict CSP stays on)."""
    global _axe_source
    if _axe_source is None:
        assert AXE.exists(), "run `npm ci --prefix tests/browser` (done by ./scripts/test)"
        _axe_source = AXE.read_text()
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(_axe_source)


def axe_violations(page: Page) -> dict[str, tuple[str, int]]:
    """Every WCAG A/AA violation axe finds now: rule id -> (impact, elements affected)."""
    load_axe(page)
    result = page.evaluate(
        "async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations']})).violations.map(v => [v.id, v.impact, v.nodes.length,"
        " v.nodes.slice(0, 3).map(n => n.target.join(' ') + ': ' + (n.failureSummary || '').slice(0, 160))])",
        WCAG_TAGS)
    _last_details.clear()
    _last_details.update({rule: examples for rule, _, _, examples in result})
    return {rule: (impact, count) for rule, impact, count, _ in result}


_last_details: dict[str, list[str]] = {}


def last_examples(rule: str) -> list[str]:
    """A few of the elements the last `axe_violations` call found breaking `rule`."""
    return _last_details.get(rule, [])


def blocking(violations: dict[str, tuple[str, int]]) -> dict[str, int]:
    """The serious and critical ones: rule id -> elements affected."""
    return {rule: count for rule, (impact, count) in violations.items() if impact in BLOCKING_IMPACTS}


def sideways_overflow(page: Page) -> int:
    """CSS pixels by which the document is wider than the viewport (0: no sideways scroll)."""
    return page.evaluate("() => Math.max(0, document.documentElement.scrollWidth"
                         " - document.documentElement.clientWidth)")


def widest_elements(page: Page) -> list[str]:
    """The elements reaching past the viewport's right edge (to say what overflows)."""
    return page.evaluate("""() => { const w = document.documentElement.clientWidth;
      return Array.from(document.querySelectorAll('body *')).filter(e => {
        const r = e.getBoundingClientRect(); return r.width && r.right > w + 1; })
      .slice(0, 4).map(e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
        + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ').join('.') : '')
        + ' ' + Math.round(e.getBoundingClientRect().right) + 'px'); }""")
