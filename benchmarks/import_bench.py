"""Import benchmark: a whole county (21 townships, 189 villages, 1,344 grids, 10,000 speakers) from one .xlsx.

    .venv/bin/python benchmarks/import_bench.py                       # SQLite in a temporary instance
    .venv/bin/python benchmarks/import_bench.py --database-url postgresql+psycopg://USER@HOST:5432/DB

It writes one workbook with two sheets' worth of rows (regions, then speakers, as two files the way the
console and CLI take them), imports both through `broadcast.services.imports` in one transaction each,
re-imports them unchanged, and prints the wall time of each step and the process's peak RSS.
Targets (issue 10): the first import of both files ≤ 30 s and ≤ 300 MB.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broadcast.platform import Platform
from broadcast.services import imports
from broadcast.setup import initialize
from tests.broadcast.test_import import REGION_HEADERS, SPEAKER_HEADERS, county_rows, xlsx


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="Use this database (default: SQLite in a temporary instance).")
    parser.add_argument("--speakers", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        region_rows, speaker_rows = county_rows(townships=21, villages=189, grids=1344, speakers=args.speakers)
        files = {"regions": xlsx(REGION_HEADERS, region_rows), "speakers": xlsx(SPEAKER_HEADERS, speaker_rows)}
        del region_rows, speaker_rows
        url = args.database_url or f"sqlite:///{Path(tmp) / 'bench.db'}"
        platform = Platform.from_settings(Path(tmp) / "instance", {"DATABASE_URL": url, "QUIET_HOURS": ""})
        initialize(platform, "admin", "benchmark-password-1")
        print(f"files: regions {len(files['regions']) // 1024} KiB, speakers {len(files['speakers']) // 1024} KiB")
        print(f"rss before import: {_rss_mb():.0f} MB")
        total = 0.0
        for label in ("first import", "re-import (unchanged)"):
            for kind, data in files.items():
                start = time.perf_counter()
                with platform.db.transaction() as session:
                    report = imports.run_import(session, kind, data, user=None)
                elapsed = time.perf_counter() - start
                if label == "first import":
                    total += elapsed
                assert report.ok, [p.line() for p in report.problems[:5]]
                print(f"{label} {kind}: {elapsed:.2f} s  {report.summary()}")
        print(f"first import total: {total:.2f} s (target ≤ 30 s); peak rss: {_rss_mb():.0f} MB (target ≤ 300 MB)")
        platform.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
