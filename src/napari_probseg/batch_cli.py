"""``probseg batch`` on the command line: its options and its exit status (the work is in batch.py)."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .batch import DEFAULT_CHANNELS, DEFAULT_WELL_REGEX, run_batch

if TYPE_CHECKING:
    import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``probseg batch`` on the CLI's subparsers."""
    import argparse  # noqa: F811 (also imported for type checking)

    from . import validation as V

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
    b.add_argument("--workers", type=V.argparse_type("workers", "--workers"), default=min(os.cpu_count() or 1, 8), help="local worker processes")
    b.add_argument("--scheduler", help="address of a running Dask scheduler (instead of a local cluster)")
    b.add_argument("--draws", type=V.argparse_type("draws", "--draws"), default=None, help="Monte-Carlo draws (default: the model's)")
    from .cli import add_binarize_option

    add_binarize_option(b)
    b.add_argument("--seed", type=V.argparse_type("seed", "--seed"), default=0)
    b.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    b.add_argument("--max-wells", type=V.argparse_type("max_wells", "--max-wells"), default=None, help="run at most this many remaining wells")
    b.set_defaults(func=cli_batch)


def cli_batch(args: argparse.Namespace) -> int:
    """Run ``probseg batch``; exit 1 when any well failed, so scripts notice."""
    res = run_batch(args.input, args.out, args.model, draws=args.draws, binarize=args.binarize, seed=args.seed,
                    device=args.device, workers=args.workers, scheduler=args.scheduler,
                    channel_patterns=tuple(args.channel_pattern), well_regex=args.well_regex, max_wells=args.max_wells)
    failed = [r for r in res.rows if r.get("status") != "ok"]
    worst = [r["well"] for r in res.rows if r.get("status") == "ok"][:5]
    print(f"{res.processed} wells run, {res.skipped} already done, {res.pending} left, "
          f"{len(failed)} failed -> {res.summary}")
    if res.other_settings:
        print(f"note: {res.other_settings} well(s) in {args.out} hold results of other settings (model, draws, "
              "binarize or seed); they are not in summary.csv and are rerun when not limited by --max-wells")
    if worst:
        print(f"review first: {', '.join(worst)}")
    for r in failed:
        print(f"  {r['well']}: {r['error']}")
    return 1 if failed else 0
