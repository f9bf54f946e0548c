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
def test_every_event_of_a_short_load_is_accounted_for(tmp_path: Path) -> None:
    written = tmp_path / "ingest_load.json"
    arguments = ["--seconds", "4", "--clients", "4", "--batch", "50", "--json", str(written)]
    finished = subprocess.run(
        [sys.executable, str(BENCH), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    document = json.loads(written.read_text())
    assert document["benchmark"] == "ingest_load"
    assert document["machine"]["cpus"] >= 1
    assert document["params"]["clients"] == 4
    (figures,) = document["results"]
    assert figures["case"] == "segment batch"
    assert figures["failures"] == []
    assert figures["sent"] > 1_000
    assert figures["duplicates"] > 0 and figures["quarantined"] > 0
    assert figures["stored"] == figures["expected_stored"]
    assert figures["quarantined"] == figures["expected_quarantined"]
    assert figures["stored"] + figures["duplicates"] + figures["quarantined"] == figures["sent"]
    assert figures["still_buffered"] == 0
    assert figures["accounted"] is True
