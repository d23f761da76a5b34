"""Plot each layer's learnt Concrete Dropout rate over training, from a run's ``dropout_rates.csv``.

``python scripts/plot_dropout_rates.py runs/bbbc010-concrete-v4 docs/images/dropout-rates.png``
also prints the last row as a Markdown table (layer, rate) for the model card.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

LEVEL_COLOURS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e"]


def read_rates(run: Path) -> tuple[list[int], dict[str, list[float]]]:
    with open(run / "dropout_rates.csv", newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        raise SystemExit(f"{run / 'dropout_rates.csv'} has no rows yet: the run writes one every 25 steps")
    names = rows[0][1:]
    steps = [int(r[0]) for r in rows[1:]]
    return steps, {n: [float(r[i + 1]) for r in rows[1:]] for i, n in enumerate(names)}


def depth(name: str, levels: int = 5) -> int:
    """U-Net level of a layer (0 = full resolution, levels-1 = bottleneck), for its colour."""
    part, idx = name.split(".")[0], int(name.split(".")[1]) if name.count(".") else 0
    if part == "down":
        return idx
    if part in ("up", "up_conv"):
        return levels - 2 - idx
    return 0  # head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run", type=Path)
    ap.add_argument("png", type=Path)
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps, rates = read_rates(args.run)
    fig, ax = plt.subplots(figsize=(7, 4), constrained_layout=True)
    for name, values in rates.items():
        style = ":" if name.startswith("up") else "-"
        ax.plot(steps, values, style, color=LEVEL_COLOURS[depth(name) % 5], lw=1.2, label=name)
    ax.set_xlabel("training step")
    ax.set_ylabel("dropout rate p")
    ax.set_title(f"Learnt Concrete Dropout rates, {args.run.name}\ncolour: U-Net level (green top, lime bottleneck); dotted: decoder",
                 fontsize=9)
    ax.legend(ncol=3, fontsize=6, loc="upper left")
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=110)
    print("| layer | rate at step", steps[-1], "|\n|---|---|")
    for name, values in rates.items():
        print(f"| {name} | {values[-1]:.3f} |")


if __name__ == "__main__":
    main()
