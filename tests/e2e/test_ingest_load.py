"""The ingestion load test, short: a real uvicorn process on 127.0.0.1, four clients posting
Segment batches for a few seconds (with repeated messageIds and unknown accounts), and every
acknowledged message accounted for exactly (bench/ingest_load.py, whose 60 s run is in
bench/README.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "ingest_load.py"


@pytest.mark.slow  # about 20 s: a server process, a project, 4 s of load, two flushes
def test_every_event_of_a_short_load_is_accounted_for() -> None:
    finished = subprocess.run(
        [sys.executable, str(BENCH), "--seconds", "4", "--clients", "4", "--batch", "50", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    figures = json.loads(finished.stdout.strip().splitlines()[-1])
    assert figures["failures"] == []
    assert figures["sent"] > 1_000
    assert figures["duplicates"] > 0 and figures["quarantined"] > 0
    assert figures["stored"] == figures["expected_stored"]
    assert figures["quarantined"] == figures["expected_quarantined"]
    assert figures["stored"] + figures["duplicates"] + figures["quarantined"] == figures["sent"]
    assert figures["still_buffered"] == 0
    assert figures["accounted"] is True
