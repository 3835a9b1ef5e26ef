"""The rows of a GRPO step fetched from the training dataset, with and without decoding each distinct image once.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/dataset_fetch.py [--steps 20] [--repeats 3]

TRL's ``GRPOTrainer`` fetches a step's 16 prompts × 8 rollouts as 128 rows (each prompt G = 8 times); the dataset
stores the images as PNG files, so the plain dataset decodes 128 images for 16 distinct ones.
``train.to_dataset(rows, decode_once=True)`` (``GRPOSettings.share_decoding``, ``shared_images.DecodeSharing``)
decodes each distinct image once. Prints the median milliseconds per 128-row fetch of each, alternating, over the
RQ1 recipe's training rows. The saving is a few percent of a GRPO step, below the noise of
``benchmarks/nano_speed.py`` on this machine, so it is measured here on its own.
"""
import argparse
import statistics
import time

from jrl_core import experiment, nano, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    exp = experiment.load_recipe("nano/rq1_2x1_pair")
    g, k = exp.grpo_settings().num_generations, exp.grpo_settings().prompts_per_step
    rows = experiment.train_rows(exp, steps=args.steps, prompts_per_step=k,
                                  view_size=nano.NanoConfig().image_size)
    data = {on: train.to_dataset(rows, decode_once=on) for on in (False, True)}
    fetches = [[i for i in range(s * k, (s + 1) * k) for _ in range(g)] for s in range(args.steps)]
    res: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(args.repeats):
        for on in (False, True):
            for rows_ in fetches:
                t = time.perf_counter()
                data[on].__getitems__(rows_)
                res[on].append(time.perf_counter() - t)
    plain, once = (statistics.median(res[on]) * 1000 for on in (False, True))
    print(f"| {k * g}-row fetch, ms | every row decoded | each distinct image once | ratio |\n|---|---|---|---|\n"
          f"| median | {plain:.1f} | {once:.1f} | {plain / once:.2f}x |")


if __name__ == "__main__":
    main()
