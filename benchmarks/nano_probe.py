"""Linear probe "halves swapped" on a nano checkpoint (``jrl_core.probe.swap_probe``), printed as JSON.

    .venv/bin/python benchmarks/nano_probe.py [checkpoint folder]   (default: the shipped base, model="nano")

The same probe ``jrl nano build`` writes into the build card: 600 2x1 pair puzzles on train-photo views for the
probe's fit, the RQ1 recipe's 300 held-out puzzles (test photos) for its score; features = the last prompt token's
final-layer state (``last``) and the image tokens' (``img_final``); each with its held-out accuracy by photo
(``held_out_by_group``). Measured (session 14) on nano-v10: last 0.85 (brick 0.52, chelsea 0.97, coffee 1.00,
moon 0.98, rocket 0.78), image tokens 0.88 (brick 0.47, rocket 0.93, the others 1.00): the base's features
carry no transferable swap signal for the brick wall, the photo that caps GRPO's mean. The same fits on the second
held-out set (``second_heldout``: 300 puzzles of the five package photos; session 15): last 0.947 (aero 0.97, ascent
1.00, china 0.83, flower 0.98, grace_hopper 0.95), image tokens 0.940 (china 0.80, the others 0.93–1.00).
"""

from __future__ import annotations

import json
import time

from jrl_core import nano, probe


def main(path: str | None = None) -> dict:
    t0 = time.time()
    folder = path or nano.resolve_model("nano")
    model, processor = nano.load_model(folder)
    report = {"checkpoint": folder, **probe.swap_probe(model, processor)}
    report["seconds"] = round(time.time() - t0, 1)
    return report


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint", nargs="?", help="a nano checkpoint folder (default: the shipped base)")
    print(json.dumps(main(ap.parse_args().checkpoint), indent=1))
