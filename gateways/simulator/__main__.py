"""Run the gateway simulator standalone: ``python -m gateways.simulator --port 8765 --seed 7``.

``recon simulator`` calls :func:`gateways.simulator.server.main` the same way.
"""

from __future__ import annotations

import sys

from gateways.simulator.server import main, parse_args

if __name__ == "__main__":
    main(**parse_args(sys.argv[1:]))
