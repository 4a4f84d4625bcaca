"""A real SMTP server on a free loopback port (aiosmtpd) that keeps what it receives.

Use the `smtp_server` fixture, then build the app with
``make_app(MAIL_BACKEND="smtp", SMTP_HOST=smtp_server.host, SMTP_PORT=smtp_server.port)``:
the portal's own smtplib client talks SMTP to it, nothing is mocked.
`free_port()` gives a port nobody listens on, for "the mail server is down".
"""

from __future__ import annotations

import asyncio
import socket
import threading
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from aiosmtpd.controller import Controller

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


class _Collector:
    """aiosmtpd handler: parse and keep every message delivered, then answer (after
    `answer_after_seconds`: a server slow to confirm what it already has)."""

    def __init__(self, answer_after_seconds: float = 0) -> None:
        self.answer_after_seconds = answer_after_seconds
        self.messages: list[EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []
        self._lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        message = message_from_bytes(envelope.original_content or envelope.content,
                                     policy=policy.default)
        with self._lock:
            self.messages.append(message)  # type: ignore[arg-type]
            self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        if self.answer_after_seconds:
            await asyncio.sleep(self.answer_after_seconds)
        return "250 Message accepted for delivery"


class SMTPServer:
    def __init__(self, answer_after_seconds: float = 0) -> None:
        self.host = HOST
        self.port = free_port()
        self._collector = _Collector(answer_after_seconds)
        self._controller = Controller(self._collector, hostname=self.host, port=self.port)

    @property
    def messages(self) -> list[EmailMessage]:
        return list(self._collector.messages)

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        return list(self._collector.envelopes)

    def start(self) -> "SMTPServer":
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


@pytest.fixture
def smtp_server():
    server = SMTPServer().start()
    try:
        yield server
    finally:
        server.stop()
