"""``python -m hermetic``."""

import sys

from hermetic import cli

raise SystemExit(cli.main(sys.argv[1:]))
