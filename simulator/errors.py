"""The simulator's own error for control requests a customer (or a test) could not make."""

from __future__ import annotations


class SimulatorError(Exception):
    """The simulated customer asked for something impossible (HTTP ``status`` on ``/_sim/``)."""

    def __init__(self, message: str, *, status: int = 409):
        super().__init__(message)
        self.status = status
