"""`python -m devtools.stripe_standin --port 12111 [--webhook-url URL] [--webhook-secret S]`."""

from __future__ import annotations

import argparse

from .server import DEFAULT_WEBHOOK_SECRET, StripeStandin


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devtools.stripe_standin",
                                     description="A local Stripe-compatible API for development.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111)
    parser.add_argument("--webhook-url", default=None,
                        help="where to POST signed events, e.g. http://127.0.0.1:5000/pay/webhooks/stripe")
    parser.add_argument("--webhook-secret", default=DEFAULT_WEBHOOK_SECRET)
    parser.add_argument("--slow-seconds", type=float, default=2.0,
                        help="how late a 'slow' fault answers")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    standin = StripeStandin(args.host, args.port, webhook_url=args.webhook_url,
                            webhook_secret=args.webhook_secret, slow_seconds=args.slow_seconds,
                            quiet=not args.verbose)
    print(f"Stripe stand-in on {standin.url} (webhooks -> {args.webhook_url or 'none'}); Ctrl-C stops it.",
          flush=True)
    try:
        standin.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
