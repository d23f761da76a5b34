"""``probseg``: train, predict and evaluate from the command line (no GUI needed)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_options import _checked, _Parser, add_binarize_option, add_tile_option, add_worm_width_option

HELP = """Probabilistic instance segmentation of worms (and other curvy, overlapping objects).

Segments each image several times with a Monte-Carlo dropout U-Net, merges the draws into
per-instance probabilities, and ranks the places where the segmentation is probably wrong.

examples:
  probseg predict well_w1.tif,well_w2.tif --out results/      # two channel files of one well
  probseg predict stack.tif --model bbbc010-concrete --out results/ --png
  probseg train --out runs/mine --data ../shared/data/bbbc010 --steps 2000
  probseg evaluate --model bbbc010-concrete --data ../shared/data/bbbc010 --split test --out eval/
"""


def _read_input(spec: str, n_channels: int, brightfield_only: bool = False):
    """A multi-channel TIFF/NPY, comma-separated single-channel files in channel order, or one
    2-D brightfield file for a model trained for brightfield alone."""
    import numpy as np

    from .data import InputError, read_tiff

    def read(p: str):
        path = Path(p)
        if not path.is_file():
            raise InputError(f"input file {p} does not exist" if not path.exists() else f"input {p} is not a file")
        if path.suffix != ".npy":
            return read_tiff(path)
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"cannot read {p} as a .npy array: {exc}") from None

    parts = [s for s in spec.split(",") if s]
    if not parts:
        raise InputError(f"input {spec!r} names no file")
    if len(parts) > 1:
        chans = [read(p) for p in parts]
        if any(c.ndim != 2 for c in chans):
            raise InputError(f"{spec}: each comma-separated file must hold one 2-D channel, got shapes "
                             + ", ".join(f"{Path(p).name} {c.shape}" for p, c in zip(parts, chans)))
        if len({c.shape for c in chans}) > 1:
            raise InputError("channel files have different shapes: "
                             + ", ".join(f"{Path(p).name} {c.shape}" for p, c in zip(parts, chans))
                             + "; give channels of one image (same height and width)")
        return np.stack(chans), Path(parts[0]).stem
    img = read(parts[0])
    if img.ndim == 2 and n_channels > 1 and not brightfield_only:
        from .channels import NEEDS_BOTH

        raise InputError(f"{spec} holds one channel, but {NEEDS_BOTH} (comma-separated, e.g. a_w1.tif,a_w2.tif)")
    return img, Path(parts[0]).stem


def _unique_stems(specs: list[str], stems: list[str]) -> None:
    """Two inputs with one file name (from different folders) would overwrite each other's results."""
    seen: dict[str, str] = {}
    for spec, stem in zip(specs, stems):
        if stem in seen:
            from .data import InputError

            raise InputError(f"inputs {seen[stem]} and {spec} would both write {stem}_* into --out; "
                             "segment them into different --out folders or rename one")
        seen[stem] = spec


def cmd_predict(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from . import validation as V
    from .box_predict import segment_for_outputs
    from .counts import count_interval
    from .data import validate_model_image
    from .devices import pick_device
    from .inference import tiles_image
    from .measurements import input_tags, measure_prediction
    from .models import load_model
    from .outputs import output_paths, render_overview, write_prediction
    from .tiling import TILE, check_memory
    from .validation import check_output_files, check_writable_dir

    out = check_writable_dir(args.out)
    device = pick_device(args.device)
    lm = load_model(args.model, device)
    if args.min_size is not None:
        lm.postprocess.min_size = args.min_size
    n = lm.model.cfg.in_channels
    inputs = [_read_input(spec, n, lm.model.brightfield_only) for spec in args.inputs]  # all checked first
    for spec, (image, _) in zip(args.inputs, inputs):
        try:
            validate_model_image(image, n, lm.model.cell, lm.model.brightfield_only)
            if tiles_image(image.shape, args.tile):  # outputs that cannot fit: refused before any compute
                check_memory(*image.shape[-2:], n, args.tile or TILE)
        except ValueError as exc:
            raise type(exc)(f"{spec}: {exc}") from None
    _unique_stems(args.inputs, [stem for _, stem in inputs])
    for _, stem in inputs:
        check_output_files(list(output_paths(out, stem).values()))
    V.check_tile(args.tile, lm.model.cell)
    for image, stem in inputs:
        bar = tqdm(total=args.draws or lm.postprocess.mc_draws, desc=f"{stem}: MC draws", unit="draw")
        progress = lambda d, t, bar=bar: (setattr(bar, "total", t), bar.update(d - bar.n))  # noqa: E731 (draws or tiles)
        pred, size = segment_for_outputs(lm.model, image, lm.postprocess, args.worm_width, draws=args.draws,
                                         binarize=args.binarize, device=device, seed=args.seed, progress=progress,
                                         tile=args.tile)
        bar.close()
        if size.mode != "off":
            print(f"{stem}: {size.describe()}")
        if hasattr(pred, "crops"):
            print(f"{stem}: {len(pred.crops)} instances on {pred.shape[0]}x{pred.shape[1]} pixels: per-instance "
                  "outputs kept as boxes (_probabilities.npz in box layout)")
        meta = {"model": lm.path, "sha256": lm.sha256, "draws": len(pred.draw_counts), "binarize": pred.binarize,
                "seed": args.seed, **size.as_meta(), **({"tiles": pred.tiles} if getattr(pred, "tiles", 0) else {})}
        raw = image[None] if image.ndim == 2 else image
        table = measure_prediction(pred, raw, input_tags(len(raw), n))  # brightfield alone: w2 columns
        paths = write_prediction(pred, out, stem, meta, image=raw, table=table)
        if args.png:
            paths["png"] = render_overview(image, pred, out / f"{stem}_overview.png", title=stem)
        count = count_interval(pred.count_inputs())
        print(f"{stem}: {pred.n_instances} instances, count {count.text()}, {len(pred.review_items())} suspected errors "
              f"to review ({len(pred.peaks)} uncertainty peaks) -> {', '.join(str(p) for p in paths.values())}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .checkpoint import read_checkpoint
    from .models import resolve_model
    from .train import TrainConfig, resume_step, stop_on_signals, train
    from .validation import check_writable_dir

    cfg = TrainConfig(out_dir=args.out, data_dir=args.data or "", split=args.split, wells=_wells(args.wells),
                      variant=args.variant, steps=args.steps, batch=args.batch, crop=args.crop, lr=args.lr,
                      seed=args.seed, device=args.device, checkpoint_every=args.checkpoint_every)
    check_writable_dir(args.out)
    resume = args.resume
    if resume == "auto":
        last = Path(args.out) / "last.safetensors"
        resume = str(last) if last.exists() else None
    if resume:  # a file that cannot be resumed is refused before data loading and the progress bar
        header, tensors = read_checkpoint(resume)
        resume_step(header, tensors, resume)
    if args.init:
        read_checkpoint(resolve_model(args.init))
    bar = tqdm(total=cfg.steps, desc="training", unit="step")

    def progress(step: int, terms: dict) -> None:
        bar.n = step
        bar.set_postfix(loss=f"{terms['total']:.3f}", ce=f"{terms['ce']:.3f}")
        bar.refresh()

    with stop_on_signals() as stop:
        init = resolve_model(args.init) if args.init else None
        path = train(cfg, resume=resume, init_from=init, progress=progress, should_stop=stop.is_set)
    bar.close()
    if stop.is_set():
        print(f"probseg: interrupted ({stop.signal_name}); checkpoint of the last finished step saved: {path}\n"
              f"continue with: probseg train --out {args.out} ... (--resume auto picks it up)", file=sys.stderr)
        return 130
    print(f"checkpoint: {path}\nloss log: {Path(args.out) / 'log.csv'}")
    return 0


def _wells(values: list[str] | None) -> list[str]:
    """``--wells A01 A02`` and ``--wells A01,A02`` alike."""
    return [w for v in values or [] for w in v.split(",") if w]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import run_evaluation
    from .validation import check_writable_dir

    check_writable_dir(args.out)
    run_evaluation(args.model, args.data, args.split, args.out, draws=args.draws, binarize=args.binarize,
                   device=args.device, wells=_wells(args.wells) or None, tune=args.tune, reuse=args.reuse,
                   brightfield_only=args.brightfield_only, resample=args.resample, worm_width=args.worm_width)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import validation as V

    p = _Parser(prog="probseg", description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("predict", help="segment images and rank uncertain places",
                        description="Write, per image: _labels.tif, _probabilities.npz, _entropy.tif, _peaks.csv (the paper's "
                                    "4x4 patches), _review.csv (the suspected errors, best first), _worms.csv (one row per "
                                    "worm, see docs/measurements.md) and _overview.png with --png; print the worm count "
                                    "with its 90% interval.")
    pr.add_argument("inputs", nargs="+", help="multi-channel TIFF, or channel files joined by commas (fluorescence,brightfield)")
    pr.add_argument("--out", required=True, help="output folder")
    pr.add_argument("--model", default="bbbc010-concrete", help="bundled model name or .safetensors file")
    pr.add_argument("--draws", type=V.argparse_type("draws", "--draws"), default=None, help="Monte-Carlo draws (default: the model's, 8)")
    add_binarize_option(pr)
    pr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    pr.add_argument("--seed", type=V.argparse_type("seed", "--seed"), default=0)
    pr.add_argument("--min-size", type=V.argparse_type("min_size", "--min-size"), default=None,
                    help="drop objects smaller than this many pixels (default: the model's; lower it for larvae)")
    pr.add_argument("--png", action="store_true", help="also write an overview picture")
    add_worm_width_option(pr)
    add_tile_option(pr)
    pr.set_defaults(func=cmd_predict)

    tr = sub.add_parser("train", help="train or fine-tune a model on BBBC010-style folders")
    tr.add_argument("--out", required=True, help="run folder (checkpoints, log.csv)")
    tr.add_argument("--data", help="data folder with images/, masks/, splits/ (default ../shared/data/bbbc010)")
    tr.add_argument("--split", default="train")
    tr.add_argument("--wells", nargs="+", help="train on these wells instead of the split (space- or comma-separated)")
    tr.add_argument("--variant", default=None, choices=["concrete", "baseline"],
                    help="architecture of a new model (default concrete); with --init or --resume the model's")
    tr.add_argument("--steps", type=V.argparse_type("steps", "--steps"), default=1000)
    tr.add_argument("--batch", type=V.argparse_type("batch", "--batch"), default=4)
    tr.add_argument("--crop", type=V.argparse_type("crop", "--crop"), default=384, help="crop side in px; 384 beat 256 clearly on BBBC010")
    tr.add_argument("--lr", type=V.argparse_type("lr", "--lr"), default=1e-3)
    tr.add_argument("--seed", type=V.argparse_type("seed", "--seed"), default=0)
    tr.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    tr.add_argument("--checkpoint-every", type=V.argparse_type("checkpoint_every", "--checkpoint-every"), default=500)
    tr.add_argument("--resume", default="auto", help="checkpoint to resume, 'auto' (OUT/last.safetensors if present)")
    tr.add_argument("--init", help="start from this model's weights (fine-tuning)")
    tr.set_defaults(func=cmd_train)

    ev = sub.add_parser("evaluate", help="BBBC010 metrics, uncertainty curves and the proofreading simulation")
    ev.add_argument("--model", default="bbbc010-concrete")
    ev.add_argument("--data", default=None, help="BBBC010 folder (default ../shared/data/bbbc010)")
    ev.add_argument("--split", default="test")
    ev.add_argument("--wells", nargs="+", help="only these wells (space- or comma-separated)")
    ev.add_argument("--out", required=True)
    ev.add_argument("--draws", type=V.argparse_type("draws", "--draws"), default=None)
    add_binarize_option(ev)
    ev.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ev.add_argument("--tune", action="store_true", help="grid-search mean-shift bandwidth, cluster radius and minimum size by 2-fold CV first")
    ev.add_argument("--reuse", metavar="EVAL_DIR", default=None,
                    help="recompute everything from EVAL_DIR/predictions/*.npz of an earlier run with the same model "
                         "and settings instead of running the network (minutes instead of an hour on a CPU)")
    ev.add_argument("--brightfield-only", action="store_true",
                    help="feed only w2 brightfield (a model trained with fluorescence blanked; issue 19)")
    from .scale_eval import parse_resample

    ev.add_argument("--resample", type=_checked(parse_resample, "--resample"), default=1.0, metavar="FACTOR",
                    help="resample images and ground-truth masks by FACTOR (another magnification; masks: linear, "
                         "thresholded at 0.5) before segmenting (default 1)")
    add_worm_width_option(ev, default="off")
    ev.set_defaults(func=cmd_evaluate)

    _add_batch_parser(sub)
    return p


def _add_batch_parser(sub: argparse._SubParsersAction) -> None:
    """``probseg batch``'s options (light: dask and torch load only when it runs)."""
    import os

    from . import validation as V
    from .batch import DEFAULT_CHANNELS, DEFAULT_WELL_REGEX  # light module: no dask or torch at import

    b = sub.add_parser(
        "batch", help="segment a folder of wells on Dask; summary.csv ranks wells for review",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Per well: the outputs of `probseg predict` and a <well>.done.json marker; then OUT/summary.csv "
                    "(review_rank 1 = proofread first). Rerunning skips finished wells and retries failed ones.\n"
                    "Exit status: 0 all wells ok, 1 some wells failed (see summary.csv), 2 bad arguments.")
    b.add_argument("input", help="folder of channel TIFFs, a quoted glob ('data/*.tif'), or a CSV: well,channel1,channel2")
    b.add_argument("--out", required=True, help="output folder")
    b.add_argument("--model", default="bbbc010-concrete", help="bundled model name or .safetensors file")
    b.add_argument("--channel-pattern", nargs="+", default=list(DEFAULT_CHANNELS), metavar="TEXT",
                   help="substring naming each channel's files, in model order (default: _w1_ _w2_)")
    b.add_argument("--well-regex", default=DEFAULT_WELL_REGEX, help="regex whose group 1 is the well name")
    b.add_argument("--workers", type=V.argparse_type("workers", "--workers"), default=min(os.cpu_count() or 1, 8),
                   help="local worker processes")
    b.add_argument("--scheduler", help="address of a running Dask scheduler (instead of a local cluster)")
    b.add_argument("--draws", type=V.argparse_type("draws", "--draws"), default=None,
                   help="Monte-Carlo draws (default: the model's)")
    add_binarize_option(b)
    b.add_argument("--seed", type=V.argparse_type("seed", "--seed"), default=0)
    b.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    b.add_argument("--max-wells", type=V.argparse_type("max_wells", "--max-wells"), default=None,
                   help="run at most this many remaining wells")
    add_worm_width_option(b)
    add_tile_option(b)
    b.set_defaults(func=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    """Run ``probseg batch``; exit 1 when any well failed, so scripts notice."""
    from .batch import run_batch

    res = run_batch(args.input, args.out, args.model, draws=args.draws, binarize=args.binarize, seed=args.seed,
                    device=args.device, workers=args.workers, scheduler=args.scheduler,
                    channel_patterns=tuple(args.channel_pattern), well_regex=args.well_regex, max_wells=args.max_wells,
                    worm_width=args.worm_width, tile=args.tile)
    failed = [r for r in res.rows if r.get("status") != "ok"]
    worst = [r["well"] for r in res.rows if r.get("status") == "ok"][:5]
    print(f"{res.processed} wells run, {res.skipped} already done, {res.pending} left, "
          f"{len(failed)} failed -> {res.summary}")
    if res.other_settings:
        print(f"note: {res.other_settings} well(s) in {args.out} hold results of other settings (model, draws, "
              "binarize, seed or worm width); they are not in summary.csv and are rerun when not limited by --max-wells")
    if worst:
        print(f"review first: {', '.join(worst)}")
    for r in failed:
        print(f"  {r['well']}: {r['error']}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit 0 done, 2 bad input (one line on stderr), 130 interrupted; never a traceback."""
    import os

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # usage errors return 2 (the message is printed); --help still exits
        if exc.code in (0, None):
            raise
        return int(exc.code) if isinstance(exc.code, int) else 2
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("probseg: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 (the one place that turns errors into a message)
        return _report(exc, os.environ.get("PROBSEG_DEBUG") == "1")


def _report(exc: Exception, debug: bool) -> int:
    """One line for the user: 2 for bad input or an unusable file or folder, 1 for anything else.

    Only the domain errors (InputError and its OptionError, CheckpointError) and OS errors are
    the user's to fix; any other exception, ValueError included, is a bug and says so.
    """
    from .checkpoint import CheckpointError
    from .validation import InputError

    if debug:
        import traceback

        traceback.print_exc()
    if isinstance(exc, (InputError, CheckpointError)):
        print(f"probseg: error: {exc}", file=sys.stderr)
        return 2
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"probseg: error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 2
    if isinstance(exc, MemoryError):
        print("probseg: error: out of memory; use a smaller image, fewer --draws or a smaller --batch/--crop",
              file=sys.stderr)
        return 2
    print(f"probseg: internal error: {type(exc).__name__}: {exc} (rerun with PROBSEG_DEBUG=1 for details and "
          "please report it)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
