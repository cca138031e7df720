"""Entry point for e2e/env/{up,down,install,status}."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tsenv.cli import main  # noqa: E402

main(sys.argv[1:])
