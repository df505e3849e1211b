"""python -m bench.run NAME [args]  (NAME: io, memory, ...)."""
from __future__ import annotations

import importlib
import sys

BENCHES = {
    "io": "bench.io_throughput",
    "memory": "bench.stream_memory",
    "landmarks": "bench.landmarks",
    "speed": "bench.speed",
    "detect": "bench.detect",
    "exposure": "bench.exposure",
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHES:
        print(f"usage: python -m bench.run {{{'|'.join(BENCHES)}}} [args]", file=sys.stderr)
        sys.exit(2)
    mod = importlib.import_module(BENCHES[sys.argv[1]])
    print(mod.main(sys.argv[2:]))


if __name__ == "__main__":
    main()
