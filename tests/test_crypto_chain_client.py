"""The chain client over real HTTP: a JSON-RPC node that hangs or is down never hangs us."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sqlalchemy import select

from app.integrations import chain
from app.jobs.chain import scan_chain
from app.models import HireState, utcnow
from app.models.crypto import ChainCursor
from app.payments import crypto
from tests import factories


class SilentNode:
    """Accepts JSON-RPC connections, reads the request, never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.connections:
            conn.close()
        self._thread.join(timeout=5)


@pytest.fixture
def silent_node():
    node = SilentNode()
    yield node
    node.close()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


# The node never answers: without the timeouts the call would wait for ever. The bound is wide
# so that a loaded machine does not fail it; 2 attempts x 0.3 s is what it takes when quiet.
SILENT_NODE_WAIT_BOUND_SECONDS = 15


def test_a_hanging_node_times_out_after_the_bounded_attempts(app, silent_node):
    app.config.update(CHAIN_RPC_URL=silent_node.url, CHAIN_CONTRACT_ADDRESS="0x" + "11" * 20,
                      CHAIN_RPC_TIMEOUT_SECONDS=0.3, CHAIN_RPC_ATTEMPTS=2, CHAIN_RPC_BACKOFF_SECONDS=0.05)
    started = time.monotonic()
    with pytest.raises(chain.ChainError):
        chain.client().head()
    elapsed = time.monotonic() - started
    assert elapsed < SILENT_NODE_WAIT_BOUND_SECONDS, f"took {elapsed:.1f} s"  # it never answers
    assert len(silent_node.connections) == 2  # exactly the configured attempts


def test_a_node_that_is_down_leaves_the_payment_page_working(app, client, auth):
    app.config.update(CHAIN_RPC_URL=closed_port_url(), CHAIN_CONTRACT_ADDRESS="0x" + "11" * 20,
                      CHAIN_RPC_TIMEOUT_SECONDS=0.3, CHAIN_RPC_ATTEMPTS=1)
    customer = auth.sign_in_as("customer")
    hire = factories.make_hire(state=HireState.HELD, customer=customer)
    assert client.get(f"/pay/{hire.reference}/crypto").status_code == 200  # quoting needs no node
    with pytest.raises(chain.ChainError):
        scan_chain()
    # The failed scan still counts, so the next polls do not queue one scan each.
    cursor = factories.db.session.scalar(select(ChainCursor))
    assert cursor is not None and cursor.last_block == -1
    fragment = client.get(f"/pay/{hire.reference}/crypto/status", headers={"HX-Request": "true"})
    assert fragment.status_code == 200 and 'data-stage="waiting"' in fragment.get_data(as_text=True)
    assert not crypto.watch_needed(utcnow())
