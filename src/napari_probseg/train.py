"""Training loop (``probseg train``): Adam, warm-up + cosine schedule, checkpoints, resume.

A resume checkpoint holds the weights, the Adam moments and the random-generator
states, so a run continued from it takes exactly the steps the uninterrupted run would
have taken (given the same device and thread count).
"""
from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from .channels import channel_meta
from .checkpoint import CheckpointError, PostprocessConfig, build_model, read_checkpoint, save_checkpoint
from .data import CHANNEL_TAGS, Well, available_wells, default_data_dir, dihedral_batch, load_well, random_warp_batch
from .devices import cpu_supports_bf16, pick_device
from .losses import total_loss
from .model import ModelConfig, UNet
from .stop_signals import StopRequest, stop_on_signals  # noqa: F401 (re-exported: the CLI's and tests' import)
from .validation import InputError
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
    # architecture of a new model (None: concrete, 19, 5); with init_from/resume None keeps the
    # file's and a value that contradicts it is refused (check_init_matches)
    variant: str | None = None
    channels: list[str] = field(default_factory=lambda: list(CHANNEL_TAGS))
    base_filters: int | None = None
    levels: int | None = None
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
        from .validation import OptionError, check

        if self.variant not in (None, "concrete", "baseline"):
            raise OptionError(f"unknown variant {self.variant!r}: choose concrete or baseline")
        if self.augment not in AUGMENTATIONS:
            raise OptionError(f"unknown augment {self.augment!r}: choose one of {', '.join(AUGMENTATIONS)}")
        for name in ("steps", "batch", "crop", "lr", "checkpoint_every", "seed"):
            check(name, getattr(self, name), name)


def resume_step(header: dict, tensors: dict[str, torch.Tensor], path: str | Path) -> int:
    """The step a resume checkpoint was saved at; CheckpointError for a weights-only file."""
    step = header.get("meta", {}).get("step")
    if not isinstance(step, int) or isinstance(step, bool) or step < 0 or not {
            "extra.rng.data", "extra.rng.torch"} <= set(tensors):
        raise CheckpointError(f"{path} is not a resume checkpoint (no step or random-generator state); "
                              "to start from its weights use --init instead of --resume")
    return step


def learning_rate(cfg: TrainConfig, step: int, total: int | None = None) -> float:
    """Linear warm-up over ``cfg.warmup`` steps, then cosine down to ``min_lr_ratio`` at ``total``
    (default ``cfg.steps``; a time-budgeted run passes the length it settled on)."""
    total = cfg.steps if total is None else total
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    t = min((step - cfg.warmup) / max(total - cfg.warmup, 1), 1.0)
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


@dataclass
class _Start:
    """Where a run starts: the network, its post-processing, the first step, resume tensors."""

    model: UNet
    post: PostprocessConfig
    step: int = 0
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)


def _training_wells(cfg: TrainConfig, wells: list[Well] | None) -> list[Well]:
    """The given wells, else the configured wells or split loaded from the data folder."""
    if wells is None:
        data_dir = Path(cfg.data_dir) if cfg.data_dir else default_data_dir()
        names = cfg.wells or available_wells(data_dir, cfg.split, tuple(cfg.channels))[0]
        wells = [load_well(data_dir, w, tuple(cfg.channels)) for w in names]
    if not wells:
        raise InputError("no training wells: give wells or a data folder with a split")
    return wells


def check_init_matches(cfg: TrainConfig, model_cfg: ModelConfig, path: str | Path) -> None:
    """Refuse architecture options that contradict the model a run starts from.

    Why: with ``init_from`` (or ``resume``) the network comes from the file; a ``variant``,
    ``base_filters``, ``levels`` or channel count that differs used to be ignored silently.
    """
    asked = {"variant": cfg.variant, "base_filters": cfg.base_filters, "levels": cfg.levels,
             "in_channels": len(cfg.channels)}
    wrong = [f"{k} {v!r} (the model has {getattr(model_cfg, k)!r})" for k, v in asked.items()
             if v is not None and v != getattr(model_cfg, k)]
    if wrong:
        raise CheckpointError(f"{path}: cannot start from this model with {', '.join(wrong)}; "
                              "leave these options unset to keep the model's")


def _start(cfg: TrainConfig, resume: str | Path | None, init_from: str | Path | None,
           gen: torch.Generator) -> _Start:
    """A new network, or the one of ``init_from`` / ``resume`` built by the checkpoint loader."""
    source = resume or init_from
    if not source:
        mcfg = ModelConfig(variant=cfg.variant or "concrete", in_channels=len(cfg.channels),
                           base_filters=cfg.base_filters or 19, levels=cfg.levels or 5,
                           init_dropout=cfg.init_dropout, n_train_samples=cfg.concrete_n)
        return _Start(UNet(mcfg), PostprocessConfig())
    header, tensors = read_checkpoint(source)
    model = build_model(header, tensors, source)
    check_init_matches(cfg, model.cfg, source)
    post = PostprocessConfig.from_dict(header.get("postprocess", {}))
    if not resume:  # a new phase from shipped weights: this run's regulariser scale and rates
        model.cfg.n_train_samples = cfg.concrete_n
        if cfg.reset_dropout:
            model.set_dropout_rate(cfg.init_dropout)
        return _Start(model, post)
    step = resume_step(header, tensors, resume)
    gen.set_state(tensors["extra.rng.data"])
    torch.set_rng_state(tensors["extra.rng.torch"])
    return _Start(model, post, step, tensors)


def budget_steps(budget_s: float, start: int, step: int, elapsed: float, total: int) -> int:
    """The run length that ends a time-budgeted run in ``budget_s``, from the time so far.

    Returns a new total (the caller's config is not changed); re-estimated at _CALIBRATE_AT.
    """
    if budget_s <= 0 or step - start not in _CALIBRATE_AT:
        return total
    return max(step + 1, start + int(budget_s * (step - start) / elapsed))


class _Logs:
    """log.csv (losses) and dropout_rates.csv, both continued on resume."""

    def __init__(self, out: Path, start: int, layer_names: list[str]) -> None:
        self.layers = layer_names
        self.start = start
        self.loss_file, self.loss = _open_log(out / "log.csv", start, ["step", *_LOSS_KEYS, "lr", "seconds"])
        self.rates_file, self.rates = _open_log(out / "dropout_rates.csv", start, ["step", *layer_names])

    def write(self, step: int, vals: dict, lr: float, seconds: float, model: UNet) -> None:
        self.loss.writerow([step, *(f"{vals[k]:.5g}" for k in _LOSS_KEYS), f"{lr:.3g}", f"{seconds:.1f}"])
        if self.layers and (step % RATES_EVERY == 0 or step == self.start + 1):
            self.rates.writerow([step, *(f"{r:.5f}" for r in model.dropout_rates().values())])

    def flush(self) -> None:
        self.loss_file.flush()
        self.rates_file.flush()

    def close(self) -> None:
        self.loss_file.close()
        self.rates_file.close()


_LOSS_KEYS = ("total", "var", "dist", "reg", "ce", "concrete")


def _next_batch(cfg: TrainConfig, wells: list[Well], bank: WellBank | None, gen: torch.Generator,
                device: torch.device, channels_last: bool) -> tuple[torch.Tensor, list[torch.Tensor] | torch.Tensor]:
    """One batch of augmented crops on ``device`` (random numbers from ``gen`` only)."""
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
    return (x.contiguous(memory_format=torch.channels_last) if channels_last else x), masks


def _step(model: UNet, opt: torch.optim.Optimizer, x: torch.Tensor, masks, weights: torch.Tensor,
          cfg: TrainConfig, bf16: bool):
    """One optimiser step; returns the loss terms."""
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        emb, logits = model(x)
    terms = total_loss(emb.float(), logits.float(), masks, model.regularizer(), weights, cfg.ce_weight)
    opt.zero_grad(set_to_none=True)
    terms.total.backward()
    if cfg.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad)
    opt.step()
    return terms


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
    early after saving a checkpoint, so stopping never loses work.  ``cfg`` is not changed
    (a time budget changes this run's length only; the checkpoint records the length used).
    Long because it is the loop itself: data, step, logging and checkpoints are helpers.
    """
    device = pick_device(cfg.device)
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wells = _training_wells(cfg, wells)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    st = _start(cfg, resume, init_from, gen)
    model = st.model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    use_bank = cfg.use_bank if cfg.use_bank is not None else device.type == "cuda"
    # else per-crop sampling; exact-pixel crops need no warping, so no bank either
    bank = WellBank(wells, device) if use_bank and cfg.augment == "warp" and same_size(wells) else None
    bf16 = device.type == "cuda" or (cfg.fast_cpu and device.type == "cpu" and cpu_supports_bf16())
    channels_last = cfg.fast_cpu or device.type == "cuda"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(_param_groups(model, cfg), lr=cfg.lr, fused=device.type == "cuda")
    if st.tensors:
        _load_optim(opt, st.tensors)
    weights = torch.tensor([1.0, 1.0, cfg.overlap_weight], device=device)
    logs = _Logs(out, st.step, list(model.dropout_rates()))
    total = cfg.steps

    def checkpoint(step: int) -> Path:
        used = replace(cfg, steps=total, variant=model.cfg.variant, base_filters=model.cfg.base_filters,
                       levels=model.cfg.levels)
        meta = {"step": step, "train_config": asdict(used), "wells": [w.name for w in wells],
                "dropout_rates": model.dropout_rates(), "torch": torch.__version__, "device": str(device),
                "bf16": bf16, **channel_meta(cfg.drop_fluorescence)}
        extra = {"rng.data": gen.get_state(), "rng.torch": torch.get_rng_state(), **_optim_tensors(opt)}
        return save_checkpoint(out / "last.safetensors", model, st.post, meta, extra)

    model.train()
    step = st.step
    t0 = time.perf_counter()
    try:
        while step < total and not (should_stop is not None and should_stop()):
            for g in opt.param_groups:
                g["lr"] = learning_rate(cfg, step, total) * g["lr_scale"]
            x, masks = _next_batch(cfg, wells, bank, gen, device, channels_last)
            terms = _step(model, opt, x, masks, weights, cfg, bf16)
            step += 1
            total = budget_steps(cfg.time_budget_s, st.step, step, time.perf_counter() - t0, total)
            if device.type == "cuda" and step % 10 and step % cfg.checkpoint_every and step < total:
                continue  # reading the losses waits for the GPU: only every 10th step
            vals = terms.as_floats()
            logs.write(step, vals, learning_rate(cfg, step - 1, total), time.perf_counter() - t0, model)
            if progress is not None:
                progress(step, vals)
            if step % cfg.checkpoint_every == 0:
                logs.flush()
                checkpoint(step)
    finally:
        logs.close()
    path = checkpoint(step)
    (out / "train_config.json").write_text(json.dumps(asdict(replace(cfg, steps=total)), indent=2))
    return path


def export_weights(checkpoint: str | Path, dest: str | Path, postprocess: PostprocessConfig | None = None) -> Path:
    """Strip resume state (optimiser, RNG) from a checkpoint: the file we ship."""
    header, tensors = read_checkpoint(checkpoint)
    model = build_model(header, tensors, checkpoint)  # the loader's checks, not key slicing
    post = postprocess or PostprocessConfig.from_dict(header.get("postprocess", {}))
    return save_checkpoint(dest, model, post, header.get("meta", {}))
