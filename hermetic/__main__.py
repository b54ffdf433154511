"""``python -m hermetic``."""

import sys

from hermetic import cli

cli.quiet_grpc()
raise SystemExit(cli.main(sys.argv[1:]))
