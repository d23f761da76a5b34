"""``probseg``: train, predict and evaluate from the command line (no GUI needed)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = """Probabilistic instance segmentation of worms (and other curvy, overlapping objects).

Segments each image several times with a Monte-Carlo dropout U-Net, merges the draws into
per-instance probabilities, and ranks the places where the segmentation is probably wrong.

examples:
  probseg predict well_w1.tif,well_w2.tif --out results/      # two channel files of one well
  probseg predict stack.tif --model bbbc010-concrete --out results/ --png
  probseg train --out runs/mine --data ../shared/data/bbbc010 --steps 2000
  probseg evaluate --model bbbc010-concrete --data ../shared/data/bbbc010 --split test --out eval/
"""


def _read_input(spec: str, n_channels: int):
    """A multi-channel TIFF/NPY, or comma-separated single-channel files in channel order."""
    import numpy as np

    from .data import InputError, read_tiff

    def read(p: str):
        path = Path(p)
        if not path.exists():
            raise InputError(f"input file {p} does not exist")
        return np.load(path) if path.suffix == ".npy" else read_tiff(path)

    parts = [s for s in spec.split(",") if s]
    if len(parts) > 1:
        chans = [read(p) for p in parts]
        if any(c.ndim != 2 for c in chans):
            raise InputError(f"{spec}: each comma-separated file must hold one 2-D channel")
        return np.stack(chans), Path(parts[0]).stem
    img = read(parts[0])
    if img.ndim == 2 and n_channels > 1:
        raise InputError(
            f"{spec} holds one channel but the model needs {n_channels}: "
            "give the channel files comma-separated, e.g. a_w1.tif,a_w2.tif"
        )
    return img, Path(parts[0]).stem


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .counts import count_inputs, count_interval
    from .inference import predict
    from .models import load_model
    from .outputs import render_overview, write_prediction
    from .devices import pick_device

    device = pick_device(args.device)
    lm = load_model(args.model, device)
    if args.min_size is not None:
        if args.min_size < 1:
            raise ValueError(f"--min-size must be at least 1 pixel, got {args.min_size}")
        lm.postprocess.min_size = args.min_size
    for spec in args.inputs:
        image, stem = _read_input(spec, lm.model.cfg.in_channels)
        bar = tqdm(total=args.draws or lm.postprocess.mc_draws, desc=f"{stem}: MC draws", unit="draw")
        pred = predict(lm.model, image, lm.postprocess, args.draws, args.threshold, device, args.seed,
                       progress=lambda d, t: bar.update(1))
        bar.close()
        meta = {"model": lm.path, "sha256": lm.sha256, "draws": len(pred.draws), "threshold": pred.threshold, "seed": args.seed}
        raw = image[None] if image.ndim == 2 else image
        paths = write_prediction(pred, args.out, stem, meta, image=raw)
        if args.png:
            paths["png"] = render_overview(image, pred, Path(args.out) / f"{stem}_overview.png", title=stem)
        n = len(pred.binary_instances())
        count = count_interval(count_inputs(pred.probabilities, pred.instances, pred.draw_counts))
        print(f"{stem}: {n} instances, count {count.text()}, {len(pred.peaks)} uncertainty peaks -> "
              f"{', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .train import TrainConfig, train

    cfg = TrainConfig(out_dir=args.out, data_dir=args.data or "", split=args.split, wells=args.wells or [],
                      variant=args.variant, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                      seed=args.seed, device=args.device, checkpoint_every=args.checkpoint_every)
    resume = args.resume
    if resume == "auto":
        last = Path(args.out) / "last.safetensors"
        resume = str(last) if last.exists() else None
    bar = tqdm(total=cfg.steps, desc="training", unit="step")

    def progress(step: int, terms: dict) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{terms['total']:.3f}", ce=f"{terms['ce']:.3f}")
        bar.refresh()

    path = train(cfg, resume=resume, init_from=args.init, progress=progress)
    bar.close()
    print(f"checkpoint: {path}\nloss log: {Path(args.out) / 'log.csv'}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import run_evaluation

    run_evaluation(args.model, args.data, args.split, args.out, draws=args.draws, threshold=args.threshold,
                   device=args.device, wells=args.wells, tune=args.tune)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="probseg", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict", help="segment images and rank uncertain places",
                        description="Write, per image: _labels.tif, _probabilities.npz, _entropy.tif, _peaks.csv, _worms.csv "
                                    "(one row per worm, see docs/measurements.md) and _overview.png with --png; "
                                    "print the worm count with its 90% interval.")
    pr.add_argument("inputs", nargs="+", help="multi-channel TIFF, or channel files joined by commas (fluorescence,brightfield)")
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--model", default="bbbc010-concrete", help="bundled model name or .safetensors file")
    pr.add_argument("--draws", type=int, default=None, help="Monte-Carlo draws (default: the model's, 8)")
    pr.add_argument("--threshold", type=float, default=None, help="probability at which an instance pixel counts (default 0.75)")
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--min-size", type=int, default=None,
                    help="drop objects smaller than this many pixels (default: the model's; lower it for larvae)")
    pr.add_argument("--png", action="store_true", help="also write an overview picture")
    pr.set_defaults(func=cmd_predict)

    tr = sub.add_parser("train", help="train or fine-tune a model on BBBC010-style folders")
    tr.add_argument("--out", required=True, help="run folder (checkpoints, log.csv)")
    tr.add_argument("--data", help="data folder with images/, masks/, splits/ (default ../shared/data/bbbc010)")
    tr.add_argument("--split", default="train")
    tr.add_argument("--wells", nargs="*", help="train on these wells instead of the split")
    tr.add_argument("--variant", default="concrete", choices=["concrete", "baseline"])
    tr.add_argument("--steps", type=int, default=1000)
    tr.add_argument("--batch", type=int, default=4)
    tr.add_argument("--crop", type=int, default=384, help="crop side in px; 384 beat 256 clearly on BBBC010")
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--checkpoint-every", type=int, default=500)
    tr.add_argument("--resume", default="auto", help="checkpoint to resume, 'auto' (OUT/last.safetensors if present)")
    tr.add_argument("--init", help="start from this model's weights (fine-tuning)")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="BBBC010 metrics, uncertainty curves and the proofreading simulation")
    ev.add_argument("--model", default="bbbc010-concrete")
    ev.add_argument("--data", default=None, help="BBBC010 folder (default ../shared/data/bbbc010)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--wells", nargs="*", help="only these wells")
    ev.add_argument("--out", required=True)
    ev.add_argument("--draws", type=int, default=None)
    ev.add_argument("--threshold", type=float, default=None)
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ev.add_argument("--tune", action="store_true", help="grid-search mean-shift bandwidth, threshold and minimum size by 2-fold CV first")
    ev.set_defaults(func=cmd_evaluate)

    from .batch import add_parser as add_batch_parser  # light import: dask/torch load only when run

    add_batch_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from .checkpoint import CheckpointError
    from .data import InputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (InputError, CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"probseg: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("probseg: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
