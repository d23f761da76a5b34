"""``probseg batch``: segment a folder of wells on Dask and rank the wells for review.

Each well's outputs are exactly ``write_prediction``'s (so the napari reader opens them),
followed by a ``<stem>.done.json`` marker written last and atomically: a well counts as
done only when its marker exists, matches this model and these settings, and every
output it lists has the recorded size.  A failed well gets ``<stem>.error.json`` instead
and is retried on the next run.  ``summary.csv`` is rebuilt from the markers after every
run, so a killed and restarted batch neither loses nor duplicates wells.
"""
from __future__ import annotations

import csv
import glob
import os
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .batch_markers import OUTPUT_KEYS, BatchSettings, _load, _mark, _markers, is_complete, record_error, write_summary  # noqa: F401

if TYPE_CHECKING:
    import numpy as np
    from distributed import Client, LocalCluster

    from .boxes import BoxPrediction
    from .checkpoint import LoadedModel
    from .inference import Prediction

DEFAULT_CHANNELS = ("_w1_", "_w2_")  # BBBC010: fluorescence, brightfield
DEFAULT_WELL_REGEX = r"_([A-Z]\d{2})_"  # plate well name such as A01 between underscores


@dataclass(frozen=True)
class WellInput:
    name: str
    files: tuple[str | None, ...]  # one file per channel, in channel order; None = missing
    channels: tuple[str, ...] = ()  # channel names (patterns or CSV header), for messages
    problem: str = ""  # found at discovery (e.g. two files for one channel): reported, not run

    @property
    def stem(self) -> str:
        return re.sub(r"[^A-Za-z0-9._-]", "_", self.name)


@dataclass
class BatchResult:
    summary: Path
    rows: list[dict]  # the summary rows, worst well first, failed wells last
    processed: int  # wells run in this call
    skipped: int  # wells already complete
    pending: int  # wells left for a later run (max_wells)
    other_settings: int = 0  # wells in OUT with results of other settings, left out of the summary


# ---------------------------------------------------------------- discovery
def discover_wells(source: str | Path, channel_patterns: tuple[str, ...] = DEFAULT_CHANNELS,
                   well_regex: str = DEFAULT_WELL_REGEX) -> list[WellInput]:
    """Wells of a folder, a glob, or a CSV (first column the well, then one file column per channel).

    In a folder or glob a file belongs to the channel whose pattern (a substring) its name
    contains; the well name is group 1 of ``well_regex`` (or, if it does not match, the
    name before the channel pattern).  Missing channels are kept and reported per well.
    """
    from .data import InputError  # lazy: data imports torch, and `probseg --help` should stay fast

    src = str(source)
    if src.lower().endswith(".csv") and Path(src).is_file():
        return _wells_from_csv(Path(src))
    if Path(src).is_dir():
        files = sorted(Path(os.path.abspath(p)) for p in Path(src).iterdir()
                       if p.is_file() and p.suffix.lower() in (".tif", ".tiff"))
        where = f"folder {src}"
    elif Path(src).is_file():
        raise InputError(f"input {src} is one file; give a folder, a glob or a CSV of wells (one image: probseg predict)")
    elif glob.has_magic(src):
        files = sorted(Path(os.path.abspath(p)) for p in glob.glob(src) if Path(p).is_file())
        where = f"glob {src!r}"
    else:
        raise InputError(f"input {src} does not exist; give a folder of TIFFs, a glob such as 'dir/*.tif', or a CSV")
    if not files:
        raise InputError(f"no image files in {where}: expected TIFFs named like '..._A01_w1_....tif'")
    rx = re.compile(well_regex)
    found: dict[str, dict[int, list[Path]]] = {}
    for f in files:
        chans = [i for i, pat in enumerate(channel_patterns) if pat in f.name]
        if len(chans) != 1:
            continue  # not a channel file (or ambiguous): ignored
        m = rx.search(f.name)
        name = (m.group(1) if m.groups() else m.group(0)) if m else f.name.split(channel_patterns[chans[0]])[0].rstrip("_-. ")
        found.setdefault(name or f.stem, {}).setdefault(chans[0], []).append(f)
    if not found:
        raise InputError(f"no file in {where} contains any of the channel patterns {list(channel_patterns)}")
    wells = []
    for name in sorted(found):
        by = found[name]
        dup = [f"{len(by[c])} files for channel {channel_patterns[c]!r}" for c in sorted(by) if len(by[c]) > 1]
        files_ = tuple(str(by[c][0]) if len(by.get(c, [])) == 1 else None for c in range(len(channel_patterns)))
        wells.append(WellInput(name, files_, tuple(channel_patterns), "; ".join(dup)))
    return wells


def _wells_from_csv(path: Path) -> list[WellInput]:
    from .data import InputError

    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if len(rows) < 2 or len(rows[0]) < 2:
        raise InputError(f"{path}: expected a header row (well, channel 1, channel 2, ...) and one row per well")
    wells, seen = [], set()
    for r in rows[1:]:
        name = r[0].strip()
        if not name or name in seen:
            raise InputError(f"{path}: empty or repeated well name {name!r}")
        seen.add(name)
        cells = [c.strip() for c in r[1:len(rows[0])]] + [""] * (len(rows[0]) - len(r))
        files = tuple(os.path.abspath(path.parent / c) if c else None for c in cells)
        wells.append(WellInput(name, files, tuple(h.strip() for h in rows[0][1:])))
    return wells


# ---------------------------------------------------------------- one well (runs on a worker)
_MODEL_CACHE: dict[tuple[str, str], LoadedModel] = {}


def _cached_model(path: str, sha: str, device: str) -> LoadedModel:
    """Load the model once per worker process (keyed by path and sha256) and keep it."""
    key = (path, sha)
    if key not in _MODEL_CACHE:
        from .models import load_model

        lm = load_model(path, device)
        if lm.sha256 != sha:
            raise RuntimeError(f"model file {path} changed since the batch started")
        _MODEL_CACHE.clear()  # one model per worker: do not accumulate
        _MODEL_CACHE[key] = lm
    return _MODEL_CACHE[key]


def _read_channels(well: WellInput, brightfield_only: bool = False) -> np.ndarray:
    """The well's raw [C,H,W] image; InputError for a missing, unreadable or mismatched channel.

    With ``brightfield_only`` (a model trained for it, issue 19) a two-channel well whose
    fluorescence file is absent gives its brightfield alone, [1,H,W]; the model then sees
    a zero fluorescence plane.
    """
    import numpy as np

    from .channels import NEEDS_BOTH
    from .data import InputError, read_tiff

    if well.problem:
        raise InputError(well.problem)
    files = well.files
    if brightfield_only and len(files) == 2 and files[0] is None and files[1] is not None:
        files = files[1:]
    missing = [well.channels[i] if i < len(well.channels) else str(i + 1) for i, f in enumerate(files) if f is None]
    if missing:
        hint = f"; {NEEDS_BOTH}" if len(files) == 2 and files[0] is None and files[1] is not None else ""
        raise InputError(f"channel file missing for {', '.join(map(repr, missing))}{hint}")
    for f in files:
        if not Path(f).is_file():
            raise InputError(f"channel file {f} does not exist")
    chans = [read_tiff(Path(f)) for f in files]
    for f, c in zip(files, chans):
        if c.size == 0:  # tifffile returns an empty array for some broken headers
            raise InputError(f"cannot read image {f}: no pixel data (corrupt or truncated TIFF?)")
        if c.ndim != 2:
            raise InputError(f"{Path(f).name} holds an image of shape {c.shape}; each channel file must be one 2-D image")
    if len({c.shape for c in chans}) > 1:
        raise InputError("channel files have different shapes: "
                         + ", ".join(f"{Path(f).name} {c.shape}" for f, c in zip(files, chans)))
    return np.stack(chans)


def process_well(well: WellInput, out_dir: str, model_path: str, model_sha: str, config: BatchSettings,
                 device: str = "cpu", torch_threads: int | None = 1) -> dict:
    """Segment one well, write its outputs, then its marker; never raises (errors become a marker)."""
    import torch

    from .box_predict import segment_for_outputs
    from .counts import count_summary
    from .data import InputError
    from .devices import pick_device
    from .measurements import input_tags, measure_prediction
    from .outputs import write_prediction

    t0, c0 = time.perf_counter(), time.process_time()
    out = Path(out_dir)
    (out / f"{well.stem}.done.json").unlink(missing_ok=True)  # old results being replaced are not done
    try:
        if torch_threads:
            torch.set_num_threads(torch_threads)  # one well per core: no oversubscription
        device = str(pick_device(device))
        lm = _cached_model(model_path, model_sha, device)
        image = _read_channels(well, lm.model.brightfield_only)
        pred, size = segment_for_outputs(lm.model, image, lm.postprocess, config.worm_width, draws=config.draws,
                                         binarize=config.binarize, device=device, seed=config.seed, tile=config.tile)
        meta = {"model": model_path, "sha256": model_sha, "well": well.name, "inputs": list(well.files),
                **config.as_dict(), **size.as_meta()}
        table = measure_prediction(pred, image, input_tags(len(image), lm.model.cfg.in_channels))
        paths = write_prediction(pred, out, well.stem, meta, table=table)
        row = well_stats(pred)
        row.update(count_summary(pred, table))
        row.update(worm_width_px=size.as_meta()["worm_width"], scale_factor=size.as_meta()["scale_factor"])
        row.update(status="ok", error="", seconds=round(time.perf_counter() - t0, 2),
                   cpu_seconds=round(time.process_time() - c0, 2))
        outputs = {k: [p.name, p.stat().st_size] for k, p in paths.items()}
        return _mark(out, well, row, config, outputs)
    except Exception as exc:  # a bad well is recorded and the batch goes on
        msg = str(exc) if isinstance(exc, InputError) else f"{type(exc).__name__}: {exc}"
        return record_error(out, well, msg, config, time.perf_counter() - t0)


def well_stats(pred: Prediction | BoxPrediction) -> dict:
    """Per-well numbers for the summary (entropy in nats; at most ln 2 = 0.693 per pixel).

    Foreground = pixels that any instance reaches with probability > 0 (so uncertain
    pixels below the binarisation threshold count); the mean over it does not depend
    on how much of the image is empty well.
    """
    import numpy as np

    from .boxes import BoxPrediction

    if isinstance(pred, BoxPrediction):  # a large image: its instances as boxes
        fg = np.zeros(pred.shape, bool) if pred.crops else None
        for c in pred.crops:
            fg[c.box] |= c.probabilities > 0
    else:
        fg = (pred.probabilities > 0).any(0) if len(pred.probabilities) else None
    ent = pred.entropy
    items = pred.review_items()
    return {
        "instances": pred.n_instances,
        "entropy_mean_fg": round(float(ent[fg].mean()), 5) if fg is not None and fg.any() else 0.0,
        "entropy_max": round(float(ent.max()), 5) if ent.size else 0.0,
        "peaks": len(pred.peaks),
        "top_peak": round(pred.peaks[0].score, 5) if pred.peaks else 0.0,
        "review_items": len(items),
        "review_score": round(sum(it.score for it in items), 2),
    }


# ---------------------------------------------------------------- driver
def run_batch(source: str | Path, out_dir: str | Path, model: str | Path = "bbbc010-concrete", *,
              draws: int | None = None, binarize: float | None = None, seed: int = 0, device: str = "cpu",
              workers: int = 1, scheduler: str | None = None, channel_patterns: tuple[str, ...] = DEFAULT_CHANNELS,
              well_regex: str = DEFAULT_WELL_REGEX, max_wells: int | None = None, progress: bool = True,
              worm_width: float | str | None = "auto", tile: int | None = None) -> BatchResult:
    """Segment every well of ``source`` not yet complete in ``out_dir``; rebuild the summary.

    ``max_wells`` runs at most that many of the remaining wells (the rest stay pending).
    ``scheduler`` is the address of a running Dask scheduler whose workers see the same
    file system; otherwise a LocalCluster of ``workers`` single-thread processes is used.
    ``worm_width`` (px, 'auto' or 'off'): each well is segmented at the training worm width
    (``scale.segment_at_width``), its results in the well's own pixels.  ``tile``: ``inference.predict``'s
    (None: wells of more than validation.AUTO_TILE_PX pixels are tiled, 0 never).
    """
    from .checkpoint import load_checkpoint
    from .data import InputError
    from .models import resolve_model
    from .scale import parse_worm_width
    from .validation import check, check_optional, check_tile, check_writable_dir

    workers = check("workers", workers, "workers")
    max_wells = check_optional("max_wells", max_wells, "max_wells")
    draws = check_optional("draws", draws, "draws")
    binarize = check_optional("binarize", binarize, "binarize")
    seed = check("seed", seed, "seed")
    worm_width = parse_worm_width(worm_width)
    tile = check_optional("tile", tile, "tile")
    check_writable_dir(out_dir)
    wells = discover_wells(source, tuple(channel_patterns), well_regex)
    dup = sorted(s for s, n in Counter(w.stem for w in wells).items() if n > 1)
    if dup:
        raise InputError(f"several wells map to the same output name {dup[:5]}; adjust --well-regex")
    path = resolve_model(model).resolve()
    lm = load_checkpoint(path)  # a bad model fails here, before any worker starts
    check_tile(tile, lm.model.cell)
    config = BatchSettings(lm.sha256, int(draws or lm.postprocess.mc_draws),
                           float(lm.postprocess.binarize if binarize is None else binarize), int(seed), worm_width, tile)
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _refuse_other_inputs(out, wells)
    for f in out.glob(".*.partial"):  # left by a killed earlier run; nothing else writes here now
        f.unlink(missing_ok=True)
    todo = [w for w in wells if not is_complete(out, w, config)]
    run = todo if max_wells is None else todo[:max_wells]
    try:
        if run:
            _run_on_dask(run, out, str(path), config, device, workers, scheduler, progress)
    finally:
        rows = write_summary(out, config)  # also after Ctrl-C: every finished well is kept
    other = len(_markers(out)) - len(rows)
    return BatchResult(out / "summary.csv", rows, len(run), len(wells) - len(todo), len(todo) - len(run), other)


def _refuse_other_inputs(out: Path, wells: list[WellInput]) -> None:
    """Refuse to mix in OUT results of same-named wells made from other files (another input folder)."""
    from .data import InputError

    clash = []
    for w in wells:  # failed wells (error markers) have no results to lose: they are simply retried
        rec = _load(out / f"{w.stem}.done.json")
        inputs = ";".join(f or "" for f in w.files)
        if rec is not None and rec["row"].get("inputs", inputs) != inputs:
            clash.append((w.name, str(rec["row"]["inputs"]).split(";")[0]))
    if clash:
        names = ", ".join(n for n, _ in clash[:5]) + (" ..." if len(clash) > 5 else "")
        raise InputError(f"{out} already holds results for well(s) {names} made from other input files "
                         f"(e.g. {clash[0][1]}); use another --out for this input, or remove those results")


def _run_on_dask(wells: list[WellInput], out: Path, model_path: str, config: BatchSettings, device: str,
                 workers: int, scheduler: str | None, progress: bool) -> None:
    from distributed import Client, LocalCluster, as_completed
    from tqdm import tqdm

    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    futures: dict = {}
    try:
        futures = {client.submit(process_well, w, str(out), model_path, config.model_sha256, config, device,
                                 pure=False): w for w in wells}
        errors = 0
        with tqdm(total=len(futures), desc="batch", unit="well", disable=not progress) as bar:
            for fut in as_completed(futures):
                well = futures[fut]
                try:
                    row = fut.result()
                except Exception as exc:  # the worker process died (e.g. out of memory)
                    row = record_error(out, well, f"worker failed: {type(exc).__name__}: {exc}", config)
                errors += row["status"] != "ok"
                bar.set_postfix(errors=errors, last=well.name)
                bar.update()
    finally:
        _shutdown(client, cluster, futures)


def _shutdown(client: Client, cluster: LocalCluster | None, futures: dict) -> None:
    """Cancel unfinished wells and close; a slow close must not hide the real error or Ctrl-C."""
    import contextlib

    with contextlib.suppress(Exception):
        client.cancel([f for f in futures if not f.done()])
    for close in (client.close, cluster.close if cluster is not None else None):
        if close is not None:
            with contextlib.suppress(Exception):
                close()
