"""Run the gateway simulator ``python -m simulator --port 8765 --seed 7`` (as ``recon simulator`` does)."""

from __future__ import annotations

from simulator.server import run

if __name__ == "__main__":
    run()
