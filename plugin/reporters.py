"""Progress for the command line: tqdm bars on stderr (quiet when stderr is not a terminal)."""
from __future__ import annotations

import sys


class TqdmReporter:
    def __init__(self, disable: bool | None = None) -> None:
        self._bars: list = []
        self._disable = (not sys.stderr.isatty()) if disable is None else disable

    def start(self, total: int, label: str) -> None:
        from tqdm import tqdm

        scale = total > 1 << 20  # byte counts
        self._bars.append(tqdm(total=total or None, desc=label, leave=False, disable=self._disable,
                               unit="B" if scale else "it", unit_scale=scale, position=len(self._bars)))

    def advance(self, n: int = 1) -> None:
        if self._bars:
            self._bars[-1].update(n)

    def finish(self) -> None:
        if self._bars:
            self._bars.pop().close()

    def check_interrupt(self) -> None:
        pass  # Ctrl-C raises KeyboardInterrupt by itself
