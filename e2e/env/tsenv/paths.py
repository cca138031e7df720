"""Where things live: the repository, the cache of downloads and builds, the running state."""

import os
from pathlib import Path

ENV_DIR = Path(__file__).resolve().parent.parent
REPO = ENV_DIR.parent.parent
CACHE = Path(os.environ.get("TRENDSTREAM_CACHE", Path.home() / ".cache" / "trendstream"))
STATE = Path(os.environ.get("TRENDSTREAM_ENV_DIR", REPO / ".e2e-env"))
ENV_FILE = STATE / "env"
PIDS_FILE = STATE / "pids.json"
LOGS = STATE / "logs"
