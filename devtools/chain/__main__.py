"""`python -m devtools.chain up|down`: the demo's local chain (development only).

    eval "$(.venv/bin/python -m devtools.chain up)"   # start (or reuse) it; export its settings
    .venv/bin/python -m devtools.chain down           # stop the chain `up` started

`up` prints `export NAME=value` lines for the app (RPC URL, contract, hot wallet, demo
wallet); messages go to stderr. If Node.js or contracts/node_modules is missing it says so
and prints nothing, so the portal starts without crypto payments.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from . import CHAIN_ID, CUSTOMER, ChainToolError, down, up


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.chain",
                                     description="The demo's local Ethereum chain (ganache).")
    parser.add_argument("command", choices=("up", "down"))
    parser.add_argument("--port", type=int, default=8545)
    args = parser.parse_args(argv)
    if args.command == "down":
        print("local chain stopped" if down() else "no local chain was running", file=sys.stderr)
        return 0
    try:
        settings = up(args.port)
    except ChainToolError as exc:
        print(f"Crypto payments are off in this run: {exc}", file=sys.stderr)
        return 0
    for name, value in settings.items():
        print(f"export {name}={shlex.quote(value)}")
    print(f"Local chain on {settings['CHAIN_RPC_URL']}, payment contract "
          f"{settings['CHAIN_CONTRACT_ADDRESS']} (stop it with: python -m devtools.chain down)",
          file=sys.stderr)
    print(f"Demo wallet for paying in crypto: the local chain's test account "
          f"{settings['FLASK_CRYPTO_DEMO_WALLET_ADDRESS']} (ganache's deterministic account {CUSTOMER}, "
          f"funded with test ETH). On a booking's crypto page press \"Use the demo wallet "
          f"(development only)\", or add the local chain to a browser wallet ({settings['CHAIN_RPC_URL']}, "
          f"chain id {CHAIN_ID}) and import that account.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
