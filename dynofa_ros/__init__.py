"""dynofa_ros: Dynamic-OFA perception for ROS 2.

The generated message modules (``dynofa_ros.msg``) are installed by the rosidl build into the
install prefix, not into the source tree. Extending ``__path__`` lets a source checkout on
``sys.path`` still find them next to an installed copy.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
