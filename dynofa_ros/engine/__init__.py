"""The inference engine: camera buffers to top-k predictions with the active family member.

Every member of a family is prepared at start-up for one backend (ONNX Runtime sessions,
extracted PyTorch modules, or the one shared super-network with per-member BN statistics), so a
switch between frames is a reference swap. No ROS import: the perception node and the replay
tools drive it.
"""

from dynofa_ros.engine.backends import BACKENDS
from dynofa_ros.engine.engine import Engine, InferenceResult, PrepareReport
from dynofa_ros.engine.errors import EngineError
from dynofa_ros.engine.preprocess import COMPRESSED_FORMATS, RAW_ENCODINGS

__all__ = [
    "BACKENDS",
    "COMPRESSED_FORMATS",
    "RAW_ENCODINGS",
    "Engine",
    "EngineError",
    "InferenceResult",
    "PrepareReport",
]
