"""Training loop (``probseg train``): Adam, warm-up + cosine schedule, checkpoints, resume.

A resume checkpoint holds the weights, the Adam moments and the random-generator
states, so a run continued from it takes exactly the steps the uninterrupted run would
have taken (given the same device and thread count).
"""
from __future__ import annotations

import contextlib
import csv
import json
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch

from .checkpoint import CheckpointError, PostprocessConfig, build_model, read_checkpoint, save_checkpoint
from .devices import cpu_supports_bf16, pick_device
from .data import CHANNEL_TAGS, Well, available_wells, default_data_dir, dihedral_batch, load_well, random_warp_batch
from .losses import total_loss
from .model import ModelConfig, UNet
from .wellbank import WellBank, same_size

_CALIBRATE_AT = (50, 300, 1000)  # steps after which a time-budgeted run re-estimates its length
AUGMENTATIONS = ("warp", "dihedral")
RATES_EVERY = 25  # steps between rows of dropout_rates.csv (the model card's rate plot)


@dataclass
class TrainConfig:
    out_dir: str = "runs/probseg"
    data_dir: str = ""
    split: str = "train"
    wells: list[str] = field(default_factory=list)  # overrides split when given
    variant: str = "concrete"
    channels: list[str] = field(default_factory=lambda: list(CHANNEL_TAGS))
    base_filters: int = 19
    levels: int = 5
    steps: int = 1000
    batch: int = 4
    crop: int = 384  # worms are 200-400 px long: 256-px crops cut them (docs/training-bbbc010-concrete.md)
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup: int = 200
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 500
    elastic: bool = True
    augment: str = "warp"  # "warp": rotation/flip/scale/elastic; "dihedral": exact pixels (final phase)
    overlap_weight: float = 3.0  # CE weight of the rare overlap class
    ce_weight: float = 10.0  # weight of the 3-class CE against the embedding terms (1.0 never learnt foreground)
    init_dropout: float = 0.1  # starting Concrete Dropout rate of every layer (Gal's reference code: 0.1)
    # Adam moves a parameter by about one learning rate per step: at 1e-4 a dropout logit moves ~0.5 in
    # 5,000 steps, while 0.01 -> 0.5 needs ~4.6. The rates get their own, larger learning rate.
    dropout_lr: float = 1e-2
    concrete_n: int = 1  # N of eq. (4) for this run (model.ModelConfig.n_train_samples says why 1)
    reset_dropout: bool = False  # with init_from: restart every rate at init_dropout
    # share of crops whose fluorescence channel (w1, index 0) is blanked: one network then also segments
    # brightfield alone, the commonest worm imaging (issue 19); a blank channel is 0 after normalisation
    drop_fluorescence: float = 0.0
    clip_grad: float = 5.0  # the distance hinge gives occasional large gradients
    fast_cpu: bool = True  # channels_last + bf16 autocast where the CPU supports bf16
    use_bank: bool | None = None  # whole data set on the device, batched augmentation (None: on a GPU)
    time_budget_s: float = 0.0  # >0: choose `steps` from the measured step time to end in this time

    def __post_init__(self) -> None:
        from .validation import check

        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augment {self.augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
        for name in ("steps", "batch", "crop", "lr", "checkpoint_every", "seed"):
            check(name, getattr(self, name), name)


class StopRequest:
    """Set by SIGINT/SIGTERM; passed to ``train`` as ``should_stop=stop.is_set``."""

    def __init__(self) -> None:
        self.signal_name = ""

    def is_set(self) -> bool:
        return bool(self.signal_name)


@contextlib.contextmanager
def stop_on_signals(signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopRequest]:
    """Turn Ctrl-C / SIGTERM into a stop request, so training ends after the current step and
    saves ``last.safetensors`` (resumable) instead of dying with the work since the last
    periodic checkpoint.  A second signal interrupts at once.  Main thread only; elsewhere a no-op.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.signal_name = signal.Signals(signum).name

    previous = {s: signal.signal(s, handler) for s in signals}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def resume_step(header: dict, tensors: dict[str, torch.Tensor], path: str | Path) -> int:
    """The step a resume checkpoint was saved at; CheckpointError for a weights-only file."""
    step = header.get("meta", {}).get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or not {
            "extra.rng.data", "extra.rng.torch"} <= set(tensors):
        raise CheckpointError(f"{path} is not a resume checkpoint (no step or random-generator state); "
                              "to start from its weights use --init instead of --resume")
    return step


def learning_rate(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min((step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1), 1.0)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def blank_fluorescence(x: torch.Tensor, share: float, gen: torch.Generator) -> torch.Tensor:
    """Set channel 0 (fluorescence) of a random ``share`` of the crops to 0, as a brightfield-only image."""
    if x.shape[1] < 2:
        return x
    blank = (torch.rand(x.shape[0], generator=gen) < share).to(x.device)
    x = x.clone()
    x[blank, 0] = 0
    return x


def _open_log(path: Path, start: int, header: list[str]):
    """A CSV log that a resumed run continues: rows written after the last checkpoint are dropped."""
    new = not path.exists() or start == 0
    if not new:
        rows = path.read_text().splitlines()
        kept = [r for r in rows[1:] if r.split(",")[0].isdigit() and int(r.split(",")[0]) <= start]
        path.write_text("\n".join(rows[:1] + kept) + "\n")
    f = open(path, "w" if new else "a", newline="")
    writer = csv.writer(f)
    if new:
        writer.writerow(header)
    return f, writer


def _param_groups(model: UNet, cfg: TrainConfig) -> list[dict]:
    """Weights at the schedule's rate; Concrete Dropout logits at ``dropout_lr`` on the same schedule."""
    logits = model.dropout_logits()
    ids = {id(p) for p in logits}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids], "lr_scale": 1.0}]
    if logits:
        groups.append({"params": logits, "lr_scale": cfg.dropout_lr / cfg.lr})
    return groups


def _optim_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for idx, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"optim.{idx}.{k}"] = torch.as_tensor(v)
    return out


def _load_optim(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("extra.optim."):
            _, _, idx, name = key.split(".", 3)
            state.setdefault(int(idx), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)
    for group in opt.param_groups:  # moments were saved contiguous; match channels_last params
        for p in group["params"]:
            for k, v in opt.state.get(p, {}).items():
                if torch.is_tensor(v) and v.shape == p.shape:
                    opt.state[p][k] = torch.empty_like(p).copy_(v)


def train(
    cfg: TrainConfig,
    wells: list[Well] | None = None,
    resume: str | Path | None = None,
    init_from: str | Path | None = None,
    progress: Callable[[int, dict], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Train (or fine-tune, with ``init_from``) and return the path of the final checkpoint.

    ``progress(step, loss_terms)`` is called every step; ``should_stop()`` ends the run
    early after saving a checkpoint, so stopping never loses work.
    """
    device = pick_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    channels = tuple(cfg.channels)
    if wells is None:
        names = cfg.wells or available_wells(data_dir, cfg.split, channels)[0]
        wells = [load_well(data_dir, w, channels) for w in names]
    if not wells:
        raise ValueError("no training wells: give wells or a data folder with a split")

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    mcfg = ModelConfig(variant=cfg.variant, in_channels=len(channels), base_filters=cfg.base_filters,
                       levels=cfg.levels, init_dropout=cfg.init_dropout, n_train_samples=cfg.concrete_n)
    model = UNet(mcfg)
    post = PostprocessConfig()
    start = 0
    resume_tensors: dict[str, torch.Tensor] = {}
    if init_from or resume:
        header, tensors = read_checkpoint(resume or init_from)
        model = build_model(header, tensors, resume or init_from)
        post = PostprocessConfig.from_dict(header.get("postprocess", {}))
        if not resume:  # a new phase from shipped weights: this run's regulariser scale and rates
            model.cfg.n_train_samples = cfg.concrete_n
            if cfg.reset_dropout:
                model.set_dropout_rate(cfg.init_dropout)
        if resume:
            start = resume_step(header, tensors, resume)
            resume_tensors = tensors
            gen.set_state(tensors["extra.rng.data"])
            torch.set_rng_state(tensors["extra.rng.torch"])
    model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    use_bank = cfg.use_bank if cfg.use_bank is not None else device.type == "cuda"
    # else per-crop sampling; exact-pixel crops need no warping, so no bank either
    bank = WellBank(wells, device) if use_bank and cfg.augment == "warp" and same_size(wells) else None
    use_bf16 = cfg.fast_cpu and device.type == "cpu" and cpu_supports_bf16()
    if cfg.fast_cpu or device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(_param_groups(model, cfg), lr=cfg.lr, fused=device.type == "cuda")
    if resume_tensors:
        _load_optim(opt, resume_tensors)
    weights = torch.tensor([1.0, 1.0, cfg.overlap_weight], device=device)
    log_file, writer = _open_log(out / "log.csv", start,
                                 ["step", "total", "var", "dist", "reg", "ce", "concrete", "lr", "seconds"])
    layer_names = list(model.dropout_rates())
    rates_file, rates_writer = _open_log(out / "dropout_rates.csv", start, ["step", *layer_names])

    def checkpoint(step: int, name: str) -> Path:
        meta = {
            "step": step,
            "train_config": asdict(cfg),
            "wells": [w.name for w in wells],
            "dropout_rates": model.dropout_rates(),
            "torch": torch.__version__,
            "device": str(device),
            "bf16": use_bf16 or device.type == "cuda",
        }
        extra = {"rng.data": gen.get_state(), "rng.torch": torch.get_rng_state(), **_optim_tensors(opt)}
        return save_checkpoint(out / name, model, post, meta, extra)

    model.train()
    step = start
    t0 = time.perf_counter()
    try:
        while step < cfg.steps:
            if should_stop is not None and should_stop():
                break
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, step) * g["lr_scale"]
            if bank is not None:
                x, masks = bank.sample(cfg.batch, cfg.crop, gen, cfg.elastic)
            else:
                if cfg.augment == "dihedral":
                    x, masks = dihedral_batch(wells, cfg.batch, cfg.crop, gen)
                else:
                    x, masks = random_warp_batch(wells, cfg.batch, cfg.crop, gen, cfg.elastic)
                x = x.to(device)
                masks = [m.to(device) for m in masks]
            if cfg.drop_fluorescence > 0:
                x = blank_fluorescence(x, cfg.drop_fluorescence, gen)
            if cfg.fast_cpu or device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16 or device.type == "cuda"):
                emb, logits = model(x)
            terms = total_loss(emb.float(), logits.float(), masks, model.regularizer(), weights, cfg.ce_weight)
            opt.zero_grad(set_to_none=True)
            terms.total.backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
            opt.step()
            step += 1
            if cfg.time_budget_s > 0 and step - start in _CALIBRATE_AT:
                elapsed = time.perf_counter() - t0
                cfg.steps = max(step + 1, start + int(cfg.time_budget_s * (step - start) / elapsed))
            if device.type == "cuda" and step % 10 and step % cfg.checkpoint_every and step < cfg.steps:
                continue  # reading the losses waits for the GPU: only every 10th step
            vals = terms.as_floats()
            writer.writerow([step, *(f"{vals[k]:.5g}" for k in ("total", "var", "dist", "reg", "ce", "concrete")),
                             f"{learning_rate(cfg, step - 1):.3g}", f"{time.perf_counter() - t0:.1f}"])
            if progress is not None:
                progress(step, vals)
            if layer_names and (step % RATES_EVERY == 0 or step == start + 1):
                rates_writer.writerow([step, *(f"{r:.5f}" for r in model.dropout_rates().values())])
            if step % cfg.checkpoint_every == 0:
                log_file.flush()
                rates_file.flush()
                checkpoint(step, "last.safetensors")
    finally:
        log_file.close()
        rates_file.close()
    path = checkpoint(step, "last.safetensors")
    (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2))
    return path


def export_weights(checkpoint: str | Path, dest: str | Path, postprocess: PostprocessConfig | None = None) -> Path:
    """Strip resume state (optimiser, RNG) from a checkpoint: the file we ship."""
    header, tensors = read_checkpoint(checkpoint)
    cfg = ModelConfig.from_dict(header["model"])
    model = UNet(cfg)
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    post = postprocess or PostprocessConfig.from_dict(header.get("postprocess", {}))
    return save_checkpoint(dest, model, post, header.get("meta", {}))
