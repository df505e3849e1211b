"""Detection recall (IoU >= 0.5) on ../shared/data/boxes (43 faces in 9 PASCAL photos), every detector."""
from __future__ import annotations

from facegraph.models.loader import runnable_ids
from facegraph.models.registry import registry
from facegraph.plugin.evaluate import evaluate_detector

from .common import DATA, machine, table


def main(argv=None) -> str:
    rows = []
    for mid in runnable_ids("detect"):
        spec = registry().get(mid)
        if not all(f.sha256 for f in spec.files):
            rows.append([mid, "not mirrored (no published sha256)", "", "", spec.licence_flag or "permissive"])
            continue
        r = evaluate_detector(DATA / "boxes", mid)
        rows.append([mid, f"{r['found']}/{r['faces']} ({r['recall'] * 100:.0f} %)", r["false_positives"],
                     f"{r['ms_per_image']:.1f}", spec.licence_flag or "permissive"])
    return (f"{machine()}; score threshold 0.5, default input sizes\n\n" +
            table(["detector", "recall", "false positives", "ms / image (2 threads)", "licence"], rows))


if __name__ == "__main__":
    print(main())
