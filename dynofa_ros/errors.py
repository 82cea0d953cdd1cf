"""Base error of the project: what the CLI and the nodes report as one clear line."""


class DynofaError(Exception):
    """A user-facing problem (bad input, file, parameter or setting); the message names the field
    and what is allowed. Layers subclass it (e.g. ``PlatformError``)."""
