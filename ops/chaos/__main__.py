"""``python -m ops.chaos --orders 10000``: one flag per :class:`~ops.chaos.run.ChaosConfig` field."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from dataclasses import fields

from ops.chaos.run import ChaosConfig, run_chaos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ops.chaos",
                                     description="Chaos run of gateway-recon (see ops/chaos).")
    for f in fields(ChaosConfig):
        flag, default = "--" + f.name.replace("_", "-"), getattr(ChaosConfig, f.name)
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default)
        elif isinstance(default, tuple):
            parser.add_argument(flag, type=lambda s: tuple(json.loads(s)), default=default, help="a JSON list")
        else:
            parser.add_argument(flag, type=type(default), default=default)
    config = ChaosConfig(**vars(parser.parse_args(argv)))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started in the background (SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # ``kill`` tears everything down too, as Ctrl-C does
    return 0 if run_chaos(config).ok else 1


if __name__ == "__main__":
    sys.exit(main())
