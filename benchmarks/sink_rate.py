"""The sink's rate alone (``sink_rows_per_s`` of ``tonewatch bench``) without the rest of the bench.

    .venv/bin/python -m benchmarks.sink_rate [--messages 50000] [--runs 3]

Starts a Kafka broker and a PostgreSQL 15 of its own in a temporary folder (as ``tonewatch up`` does), then runs
tonewatch/perf/sink_bench.py's ``measure_sink`` --runs times on fresh topics (50,000 scored records plus their
trends records: what ``tonewatch bench`` measures with its default 2,000 messages). Prints one JSON line per run,
then the medians. ``TONEWATCH_STORE__BATCH_RECORDS`` and the other store settings apply as in the sink.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from tonewatch.core.settings import Settings
from tonewatch.perf.sink_bench import measure_sink
from tonewatch.stack.kafka import start_kafka, stop_kafka
from tonewatch.stack.postgres import start_postgres
from tonewatch.stack.procs import stop

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000, help="scored records per run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    base = Settings().updated(run_dir=REPO / ".tonewatch")  # the broker's jars are cached there
    with tempfile.TemporaryDirectory(prefix="tonewatch-sinkrate-") as tmp:
        kafka = start_kafka(base, Path(tmp) / "kafka")
        try:
            pg = start_postgres(Path(tmp) / "postgres")
            try:
                settings = base.updated(run_dir=Path(tmp), kafka__bootstrap=kafka.bootstrap, store__dsn=pg.dsn)
                runs = []
                for _ in range(args.runs):
                    runs.append(measure_sink(settings, args.messages))
                    print(json.dumps(runs[-1]), flush=True)
            finally:
                stop(pg.pid, timeout_s=60)
        finally:
            stop_kafka(kafka)
    print(json.dumps({key: statistics.median(r[key] for r in runs)
                      for key in ("rows_per_s", "scored_rows_per_s", "seconds")}))


if __name__ == "__main__":
    main()
