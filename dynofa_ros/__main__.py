"""``python -m dynofa_ros COMMAND ...``: the ``dynofa`` command, for launchers that start a
module rather than a script (``torchrun -m dynofa_ros train ...``)."""

import sys

from dynofa_ros.cli import main

sys.exit(main())
