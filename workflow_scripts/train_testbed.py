"""Train one testbed model (t2i, lm or clip) into a folder; the `train_testbed` rule calls this script.

    python workflow_scripts/train_testbed.py t2i --out steercore/testbed/weights/t2i [--steps N] [--seed S]
"""

import warm

warm.start()  # forked from this run's warm server, if it has one (warm.py)

import argparse
import json

import torch

from steercore.stages.job import main_guard
from steercore.testbed.train import DEFAULT_STEPS, train


@main_guard
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(DEFAULT_STEPS), help="which testbed model to train")
    parser.add_argument("--out", required=True, help="output folder (replaced atomically when training ends)")
    parser.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the shipped run's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (the shipped runs used 1)")
    parser.add_argument("--max-seconds", type=float, default=None, help="stop early after this wall time")
    parser.add_argument("--checkpoint-dir", default=None, help="t2i only: also save step{k} checkpoints here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    extra = {"checkpoint_dir": args.checkpoint_dir} if args.checkpoint_dir else {}
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    steps = DEFAULT_STEPS[args.model] if args.steps is None else args.steps
    result = train(args.model, args.out, steps=steps, seed=args.seed, max_seconds=args.max_seconds, **extra)
    losses = result["losses"]
    print(json.dumps({"model": args.model, "out": args.out, "steps": result["steps"],
                      "first_loss": losses[0], "last_loss": losses[-1]}))


if __name__ == "__main__":
    main()
