"""`python -m devtools.licence_standin --port 8099`: run the licence stand-in in the foreground."""

from __future__ import annotations

import argparse

from . import DEFAULT_API_KEY, DEFAULT_PAUSE_SECONDS, DEFAULT_SLOW_SECONDS, LicenceStandIn


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.licence_standin",
                                     description="Local stand-in for the driving-licence check service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--api-key", default=DEFAULT_API_KEY)
    parser.add_argument("--slow-seconds", type=float, default=DEFAULT_SLOW_SECONDS,
                        help="how long the slow test licences sleep (past the client's timeout)")
    parser.add_argument("--pause-seconds", type=float, default=DEFAULT_PAUSE_SECONDS,
                        help="how long WAITABIT takes (under the client's timeout)")
    args = parser.parse_args(argv)
    standin = LicenceStandIn(args.host, args.port, api_key=args.api_key,
                             slow_seconds=args.slow_seconds, pause_seconds=args.pause_seconds,
                             verbose=True)
    print(f"Licence stand-in on {standin.url} (API key {args.api_key!r}); Ctrl-C stops it.", flush=True)
    try:
        standin.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
