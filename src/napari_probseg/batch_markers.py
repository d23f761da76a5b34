"""Batch markers and summary: when a well counts as done, and ``summary.csv`` rebuilt from them.

Why apart from ``batch.py``: the restart guarantees (a killed run neither loses nor
duplicates wells) live here and nowhere else; the driver only calls these.
"""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .atomic import atomic_write, write_json

if TYPE_CHECKING:
    from .batch import WellInput

@dataclass(frozen=True)
class BatchSettings:
    """What makes two runs' results of a well interchangeable; stored in every marker.

    A finished well is skipped only when its marker holds these exact settings.
    """

    model_sha256: str
    draws: int
    binarize: float
    seed: int
    worm_width: float | str = "auto"  # px, "auto" or "off" (scale.parse_worm_width); wells resampled by it
    tile: int | None = None  # --tile (issue 17); None (auto) is left out of the dict: markers made before it match

    def as_dict(self) -> dict:
        d = asdict(self)
        if d["tile"] is None:
            del d["tile"]
        return d


OUTPUT_KEYS = ("labels", "probabilities", "entropy", "peaks", "review", "worms")
FIELDS = ["well", "status", "review_rank", "review_score", "review_items", "instances", "count", "count_low",
          "count_high", "count_level", "median_area_px", "median_length_px", "median_straightness", "border_worms",
          "overlapping_worms", "worm_width_px", "scale_factor", "entropy_mean_fg", "entropy_max", "peaks", "top_peak", "seconds", "cpu_seconds",
          "error", "inputs"]


def _mark(out: Path, well: WellInput, row: dict, config: BatchSettings, outputs: dict) -> dict:
    row = {"well": well.name, "inputs": ";".join(f or "" for f in well.files), **row}
    write_json(out / f"{well.stem}.done.json", {"row": row, "config": config.as_dict(), "outputs": outputs})
    (out / f"{well.stem}.error.json").unlink(missing_ok=True)
    return row


def record_error(out: Path, well: WellInput, message: str, config: BatchSettings, seconds: float = 0.0) -> dict:
    """Write ``<stem>.error.json`` (retried next run) and drop any stale done marker."""
    out.mkdir(parents=True, exist_ok=True)
    row = {"well": well.name, "status": "error", "error": message, "seconds": round(seconds, 2),
           "inputs": ";".join(f or "" for f in well.files)}
    (out / f"{well.stem}.done.json").unlink(missing_ok=True)
    write_json(out / f"{well.stem}.error.json", {"row": row, "config": config.as_dict()})
    return row


def _load(path: Path) -> dict | None:
    try:
        rec = json.loads(path.read_text())
        if not (isinstance(rec, dict) and isinstance(rec.get("row"), dict)):
            return None
        cfg = rec.get("config")
        if isinstance(cfg, dict) and "threshold" in cfg:  # markers written before "binarize" had its name
            cfg["binarize"] = cfg.pop("threshold")
        if isinstance(cfg, dict):  # markers written before the worm width existed: segmented at the image's scale
            cfg.setdefault("worm_width", "off")
        return rec
    except (OSError, ValueError):
        return None  # unreadable marker: treat the well as not done


def _outputs_ok(out: Path, rec: dict) -> bool:
    outs = rec.get("outputs") or {}
    return set(outs) == set(OUTPUT_KEYS) and all(
        (out / name).is_file() and (out / name).stat().st_size == size for name, size in outs.values())


def is_complete(out: Path, well: WellInput, config: BatchSettings) -> bool:
    """Done for this model and settings, with every output present at its recorded size."""
    rec = _load(Path(out) / f"{well.stem}.done.json")
    return rec is not None and rec.get("config") == config.as_dict() and _outputs_ok(Path(out), rec)


def _markers(out: Path) -> set[str]:
    """Stems of all wells with a done or error marker in ``out``."""
    return {p.name.rsplit(".", 2)[0] for pat in ("*.done.json", "*.error.json") for p in out.glob(pat)}


def write_summary(out: str | Path, config: BatchSettings | None = None) -> list[dict]:
    """Rebuild ``summary.csv`` from the markers in ``out``: one row per well, worst first.

    With ``config``, only wells run with these settings (model, draws, binarize, seed)
    are listed, so one summary never ranks wells computed differently.

    ``review_rank`` 1 = the well to proofread first: wells are ranked by ``review_score``,
    the summed score of the well's review items (its ``_review.csv``, the suspected errors;
    ties: more items, then higher mean foreground entropy).
    Failed wells come last, unranked.
    """
    out = Path(out)
    recs = {p.name[: -len(".error.json")]: _load(p) for p in sorted(out.glob("*.error.json"))}
    for p in sorted(out.glob("*.done.json")):
        rec = _load(p)
        if rec is not None and _outputs_ok(out, rec):
            recs[p.name[: -len(".done.json")]] = rec
    want = None if config is None else config.as_dict()
    rows = [r["row"] for r in recs.values() if r is not None and (want is None or r.get("config") == want)]
    ok = sorted((r for r in rows if r.get("status") == "ok"),
                key=lambda r: (-r["review_score"], -r.get("review_items", 0), -r["entropy_mean_fg"], r["well"]))
    for i, r in enumerate(ok, 1):
        r["review_rank"] = i
    rows = ok + sorted((r for r in rows if r.get("status") != "ok"), key=lambda r: r["well"])
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, FIELDS, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    atomic_write(out / "summary.csv", write)
    return rows
