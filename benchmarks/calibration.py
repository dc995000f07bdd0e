"""How well calibrated are the scores and the confidences, on the dev set the calibration never saw?

Run: python benchmarks/calibration.py   (writes benchmarks/results/calibration.md)

Prints the expected calibration error (10 equal-width bins) of the raw top score and of the
calibrated confidence, for the answered items and for all items (an abstention counted as an
answer whose confidence is the top match's), and which calibration method the matcher kept.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from common import load_labelled, write_result

from mlmatch import NONE_LABEL, Matcher
from mlmatch.metrics import expected_calibration_error


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--backend", default=None, help="torch, onnx or static (default: mlmatch's)"
    )
    matcher = Matcher(backend=parser.parse_args().backend)
    texts, labels = load_labelled()
    results = matcher.classify_many(texts)
    predicted = np.array([r.label or NONE_LABEL for r in results])
    correct = predicted == np.array(labels)
    raw = np.array([r.matches[0].score for r in results])
    confidence = np.array([r.matches[0].confidence for r in results], dtype=float)
    answered = np.array([r.label is not None for r in results])
    method = matcher.calibrator.method.value if matcher.calibrator else "none"
    rows = [
        ("answered (a category was given)", answered),
        ("all, abstentions counted as answers", np.ones_like(answered)),
    ]
    lines = [
        f"Backend: {matcher.encoder.model_id}. Calibration method kept: {method}; "
        f"dev set {len(texts)} items, "
        f"{int(answered.sum())} answered.",
        "",
        "| items | raw top score | calibrated confidence |",
        "|---|---|---|",
    ]
    for name, mask in rows:
        lines.append(
            f"| {name} | {expected_calibration_error(raw[mask], correct[mask]):.3f} "
            f"| {expected_calibration_error(confidence[mask], correct[mask]):.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    write_result("calibration.md", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
