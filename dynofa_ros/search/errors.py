"""Errors of the search layer (one clear line each, naming the file, field or limit)."""

from __future__ import annotations

from dynofa_ros.errors import DynofaError


class SearchError(DynofaError):
    """A search that cannot run as asked (e.g. a latency limit no sub-network meets)."""


class LatencyTableError(DynofaError):
    """A latency table that cannot be used: unreadable, malformed, for another resolution, or
    lacking a layer the sub-network needs."""


class PredictorError(DynofaError):
    """An accuracy predictor file or state dict that does not fit the predictor."""
