"""python -m bench.run [all | NAME [args]]: one benchmark, or all of them (what `make bench` runs)."""
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
    "temporal": "bench.temporal",
    "blend": "bench.blend",
    "colour": "bench.colour_match",
    "render": "bench.render",
    "fit": "bench.fit",
    "replace": "bench.replace",
    "template_memory": "bench.template_memory",
}


def main() -> None:
    names = list(BENCHES) if len(sys.argv) < 2 or sys.argv[1] == "all" else [sys.argv[1]]
    if any(n not in BENCHES for n in names):
        print(f"usage: python -m bench.run [all|{'|'.join(BENCHES)}] [args]", file=sys.stderr)
        sys.exit(2)
    for name in names:
        print(f"## {name}\n")
        print(importlib.import_module(BENCHES[name]).main(sys.argv[2:] if len(names) == 1 else []))
        print()


if __name__ == "__main__":
    main()
