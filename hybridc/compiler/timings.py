"""Where a compile spends its time, phase by phase (like a C compiler's -ftime-report).

The driver times each phase it runs; `hybridc compile --timings` and
benchmarks/compile_bench.py print the table, so a slow phase is found by measurement.
"""

import time
from contextlib import contextmanager


class Timings:
    """Wall and CPU seconds per named phase, in the order the phases first ran."""

    def __init__(self):
        self.phases = {}  # name -> [wall seconds, CPU seconds]

    @contextmanager
    def phase(self, name: str):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            spent = self.phases.setdefault(name, [0.0, 0.0])
            spent[0] += time.perf_counter() - wall
            spent[1] += time.process_time() - cpu

    def rows(self) -> list:
        """[(phase, wall ms, CPU ms)], plus a "total" row."""
        rows = [(name, wall * 1e3, cpu * 1e3) for name, (wall, cpu) in self.phases.items()]
        return rows + [("total", sum(r[1] for r in rows), sum(r[2] for r in rows))]
