"""One error hierarchy: every error Tonewatch raises on purpose is a ``TonewatchError``.

Each package keeps its own specific classes (as quix-streams does), derived from one of the three kinds
below; the built-in base beside it keeps ``except ValueError`` callers working.
"""

from __future__ import annotations


class TonewatchError(Exception):
    """The base of every error Tonewatch raises on purpose; the CLI prints it as one line."""


class InvalidInput(TonewatchError, ValueError):
    """A record, file or argument that cannot be used as it is: refused or dead-lettered with this reason."""


class ConfigError(InvalidInput):
    """Settings that cannot be used: a variable that names no setting, or values that contradict each other."""


class ServiceError(TonewatchError, RuntimeError):
    """A collaborator (Kafka, Triton, a local-stack process) failed or is not what we expect."""


class TritonError(ServiceError):
    """Triton refused a request, or a model did not become ready in time."""
