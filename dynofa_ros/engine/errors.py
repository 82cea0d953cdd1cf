"""The engine's user-facing error: bad input frames, unknown members, processors or settings."""

from __future__ import annotations

from dynofa_ros.errors import DynofaError


class EngineError(DynofaError, ValueError):
    """A bad input or setting; the message names the field, the bad value and what is allowed.

    It is a ``ValueError`` too, so callers that treat a malformed frame as a plain value error
    (the perception node's worker) keep going. The engine's state is unchanged when it is raised.
    """
