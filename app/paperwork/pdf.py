"""What every document PDF shares: ReportLab's page template, styles, and the footer hash.

The footer of a document carries the SHA-256 of its body: the same document rendered
without footers. ReportLab's invariant mode leaves out the creation time and random file id,
so a document rendered twice from the same stored content is the same bytes; the body can
therefore be rendered again from what is stored with the hire and its hash compared with
the one printed on any copy (`body_sha256`). The hash of the whole file (with its footer) is
stored too, to check a copy byte for byte.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from typing import Callable, Optional

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle
from xml.sax.saxutils import escape

MARGIN = 18 * mm
_base = getSampleStyleSheet()
STYLES = {
    "title": ParagraphStyle("title", parent=_base["Title"], fontSize=16, spaceAfter=6),
    "h2": ParagraphStyle("h2", parent=_base["Heading2"], fontSize=11, spaceBefore=8, spaceAfter=3),
    "body": ParagraphStyle("body", parent=_base["BodyText"], fontSize=8.5, leading=11),
    "small": ParagraphStyle("small", parent=_base["BodyText"], fontSize=7, leading=9),
}
TABLE_STYLE = TableStyle([
    ("FONTSIZE", (0, 0), (-1, -1), 8), ("VALIGN", (0, 0), (-1, -1), "TOP"),
    ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.grey), ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ("TOPPADDING", (0, 0), (-1, -1), 2),
])

Flowables = list  # of ReportLab flowables
Make = Callable[[], Flowables]


def p(text: str, style: str = "body") -> Paragraph:
    """A paragraph of plain text (escaped: customer input never becomes markup)."""
    return Paragraph(escape(str(text)).replace("\n", "<br/>"), STYLES[style])


def table(rows: list[list], widths: Optional[list[float]] = None, header: bool = True) -> Table:
    t = Table([[p(c) if isinstance(c, str) else c for c in row] for row in rows], colWidths=widths,
              hAlign="LEFT")
    t.setStyle(TABLE_STYLE if header else TableStyle([("FONTSIZE", (0, 0), (-1, -1), 8),
                                                      ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return t


def _render(make: Make, title: str, footer: Optional[Callable[[int], str]]) -> bytes:
    out = io.BytesIO()
    doc = SimpleDocTemplate(out, pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN,
                            topMargin=MARGIN, bottomMargin=MARGIN, title=title,
                            author="ACME Rentals", invariant=1)

    def on_page(canvas, document) -> None:
        if footer is None:
            return
        canvas.saveState()
        canvas.setFont("Helvetica", 6.5)
        canvas.drawString(MARGIN, 10 * mm, footer(document.page))
        canvas.restoreState()

    doc.build(make(), onFirstPage=on_page, onLaterPages=on_page)
    return out.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Rendered:
    pdf: bytes
    content_sha256: str  # of the body (printed in the footer)
    file_sha256: str  # of `pdf`


def body_sha256(make: Make, title: str) -> str:
    """The hash a document's footer prints: of its body alone, rendered without footers."""
    return sha256(_render(make, title, None))


def render(make: Make, title: str, footer_label: str) -> Rendered:
    """The document with "<label> · page N · SHA-256 of the document body: <hex>" on each page."""
    content = body_sha256(make, title)
    pdf = _render(make, title, lambda page: f"{footer_label} · page {page} · "
                                            f"SHA-256 of the document body: {content}")
    return Rendered(pdf, content, sha256(pdf))
