"""One trainer for every recipe: single process or DDP under ``torchrun``.

Determinism makes resume exact: every batch is a pure function of (seed, epoch, index),
torch's RNG is re-seeded from the global step, and the learning-rate schedule is a
function of the step; a checkpoint (weights, objective heads, optimizer moments, step)
is written every ``checkpoint_every`` steps, so a run killed mid-epoch continues with
``resume=True`` exactly where its last checkpoint left it. Data streamed from shards
(``shards=``, :mod:`.shard_batches`) keeps its position in the checkpoint as well.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_sdk.checkpoint import load_tensors, save_model, save_tensors
from edge_sdk.errors import EdgeSDKError, ModelFileError
from edge_sdk.jsonfile import read_json
from edge_sdk.outputs import atomic_write_text, lock_folder, output_folder, writing
from edge_sdk.recipe import Recipe
from edge_sdk.spec import get_spec
from edge_sdk.train.plots import plot_heatmaps, plot_losses

__all__ = ["pretrain", "distill", "TrainModule", "build_train_data", "load_teacher", "init_weights"]

log = logging.getLogger(__name__)


class TrainModule(nn.Module):
    """The model plus its objectives' heads: what the optimizer (and DDP) sees.

    A distillation teacher is held frozen beside it, in eval mode and outside the module
    tree, so it is neither trained, nor checkpointed, nor synchronised by DDP.
    """

    def __init__(self, model: nn.Module, recipe: Recipe, teacher: nn.Module | None = None):
        from edge_sdk.objectives import DISTILL_OBJECTIVES, OBJECTIVES

        super().__init__()
        self.model = model
        self.objectives = nn.ModuleDict(
            {
                n: OBJECTIVES[n](model, teacher, **c.params) if n in DISTILL_OBJECTIVES else OBJECTIVES[n](model, **c.params)
                for n, c in recipe.objectives.items()
            }
        )
        self.cfg = recipe.objectives
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None else []

    def forward(self, batch: dict, epoch: int) -> dict[str, torch.Tensor]:
        out = self.model(batch["wave"], batch["image"])
        if self._teacher:
            with torch.no_grad():
                batch = {**batch, "teacher": self._teacher[0](batch["wave"], batch["image"])}
        losses = {n: obj(out, batch, self.model) for n, obj in self.objectives.items() if epoch >= self.cfg[n].start_epoch}
        losses["loss"] = sum(self.cfg[n].weight * v for n, v in losses.items())
        return losses

    def after_step(self) -> None:
        for obj in self.objectives.values():
            if hasattr(obj, "update_target"):
                obj.update_target(self.model)


def build_train_data(recipe: Recipe, spec, fsdd, mnist, split: str = "train", length: int | None = None, seed: int | None = None):
    """The recipe's data set: real AV-Digits when both folders are given, else the generated fallback."""
    from edge_sdk.media.avclips import AVDigitClips
    from edge_sdk.media.avdigits import AVDigits
    from edge_sdk.media.digits import load_bank, synthetic_bank

    if recipe.data.kind == "video":
        from edge_sdk.data.video import VideoFolderDataset

        if not recipe.data.video_dir:
            raise EdgeSDKError('[data] kind = "video" needs a folder of clips', "set [data] video_dir in the recipe or pass --videos DIR")
        return _Shuffled(VideoFolderDataset(recipe.data.video_dir, spec), recipe.train.seed)
    if fsdd and mnist:
        bank = load_bank(fsdd, mnist, split, spec.audio.sample_rate, tuple(recipe.data.test_speakers))
    else:
        log.warning("no --fsdd/--mnist given: using generated shapes and tones instead of AV-Digits")
        bank = synthetic_bank(split, spec.audio.sample_rate)
    d = recipe.data
    length = length or d.scenes_per_epoch
    seed = recipe.train.seed if seed is None else seed
    if d.kind == "clips":
        train = split == "train"  # training draws its own synchrony shifts per clip
        return AVDigitClips(bank, spec, length, d.k, seed, train, d.frames, d.fps, shifts=None if train else (-0.6, -0.3, 0.3, 0.6))
    return AVDigits(bank, spec, length, d.k, seed, split == "train", mask=d.mask_audio)


class _Shuffled:
    """A fixed data set seen in a fresh order each epoch (frames of one clip are near-duplicates:
    kept together they would be false negatives for each other in a contrastive batch)."""

    def __init__(self, data, seed: int):
        self.data, self.seed, self.order = data, seed, np.arange(len(data))

    def __len__(self) -> int:
        return len(self.data)

    def set_epoch(self, epoch: int) -> None:
        self.order = np.random.default_rng([self.seed, epoch]).permutation(len(self.data))

    def set_k(self, k: int) -> None:
        pass  # real clips have what they have

    def __getitem__(self, i: int) -> dict:
        return self.data[int(self.order[i])]


def _collate(items: list[dict], device) -> dict[str, torch.Tensor]:
    keys = [k for k in items[0] if k in ("image", "wave", "wave_shifted")]
    return {k: torch.from_numpy(np.stack([it[k] for it in items])).to(device) for k in keys}


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AMX or AVX512-BF16; read from Linux's cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def _use_bf16(precision: str, dev: torch.device) -> bool:
    """bf16 autocast for the forward pass (fp32 weights, optimizer and log-mel front end)."""
    if precision == "bf16" and dev.type == "cpu" and not cpu_has_bf16():
        log.warning('[train] precision = "bf16" on a CPU without bf16 matrix units: expect it to be slower than fp32')
    return precision == "bf16" or (precision == "auto" and dev.type == "cuda")


def _lr(step: int, total: int, cfg) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))


def _optim_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for i, st in opt.state_dict()["state"].items():
        for k, v in st.items():
            out[f"optim.{i}.{k}"] = v if torch.is_tensor(v) else torch.tensor(v)
    return out


def _load_optim(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, i, k = key.split(".", 2)
            state.setdefault(int(i), {})[k] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def _dist() -> tuple[int, int]:
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    if torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def pretrain(
    recipe: Recipe,
    out: str | Path,
    fsdd=None,
    mnist=None,
    device: str = "auto",
    resume: bool | str = False,
    progress: bool = True,
    max_steps: int | None = None,
    shards=None,
) -> dict:
    """Train ``recipe`` into ``out``; returns a report (steps, final losses, paths).

    ``resume=True`` continues the run in ``out`` from its last checkpoint (refused where there is
    none), ``"auto"`` continues one if there is one. ``out`` is locked while training: a second
    run into it is refused. ``shards`` (a :class:`~edge_sdk.train.shard_batches.ShardSource` or
    its spec: a folder, glob, brace pattern or URL of ``edge-sdk shard``'s output) streams the
    training windows from shards instead of the recipe's data."""
    out = Path(out)
    if resume is True and not (out / "checkpoints" / "last.json").exists():
        what = "does not exist" if not out.exists() else "holds no checkpoint (a run killed before its first one starts over)"
        raise EdgeSDKError(f"--resume: {out} {what}", "check the --out folder, or leave out --resume to start a new run there")
    rank, world = _dist()
    lock = lock_folder(output_folder(out), "--out") if rank == 0 else None
    try:
        if (out / "checkpoints" / "last.json").exists() and not resume:
            raise EdgeSDKError(f"{out} already holds a training run", "pass --resume to continue it, or choose another --out folder")
        return _train(recipe, out, fsdd, mnist, device, progress, max_steps, rank, world, shards)
    finally:
        if lock is not None:
            lock.release()


def _train(recipe: Recipe, out: Path, fsdd, mnist, device: str, progress: bool, max_steps: int | None, rank: int, world: int, shards=None) -> dict:
    """:func:`pretrain`'s work, with ``out`` locked: from the last checkpoint, if there is one."""
    ckpt_dir = out / "checkpoints"
    dev = _device(device, world)
    spec = get_spec(recipe.model.spec)
    cfg = recipe.train
    if cfg.batch_size % world:
        raise EdgeSDKError(f"batch_size {cfg.batch_size} does not split over {world} processes", "use a batch_size divisible by the process count")
    teacher = load_teacher(recipe.distill.teacher, spec) if recipe.distill.teacher else None
    data = _shard_batches(shards, recipe, spec, rank, world, dev, out) if shards else build_train_data(recipe, spec, fsdd, mnist)
    module, opt, bf16 = _build(recipe, spec, teacher, dev)
    steps_per_epoch = max(1, len(data) // cfg.batch_size)
    total = steps_per_epoch * cfg.epochs if max_steps is None else min(max_steps, steps_per_epoch * cfg.epochs)
    step = _restore(out, recipe, module, opt, data) if (ckpt_dir / "last.json").exists() else 0
    wrapped = _wrap(module, recipe, world, dev)
    if rank == 0:
        with writing(ckpt_dir, "--out"):
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "recipe.json", json.dumps(recipe.to_dict(), indent=2))
        _trim_metrics(out / "metrics.jsonl", step)
    bar = _progress(f"{'distill' if teacher is not None else 'pretrain'} {recipe.name}", total, step) if progress and rank == 0 else None
    started, t_last, deadline = time.time(), time.time(), time.time() + cfg.max_minutes * 60 if cfg.max_minutes else None
    metrics_path = out / "metrics.jsonl"
    module.train()
    while step < total:
        epoch, batch = _batch(data, recipe, step, steps_per_epoch, rank, world, dev)
        losses = _train_step(wrapped, module, opt, batch, epoch, step, _lr(step, total, cfg), bf16, dev)
        step += 1
        if rank == 0:
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{losses['loss'].item():.3f}", epoch=epoch)
            if step % cfg.log_every == 0 or step == total:
                t_last = _log_row(metrics_path, {"step": step, "epoch": epoch, "lr": opt.param_groups[0]["lr"]}, losses, cfg, started, t_last)
            stop = deadline is not None and time.time() > deadline
            if step % cfg.checkpoint_every == 0 or step == total or stop:
                _checkpoint(ckpt_dir, module, opt, step, recipe, data)
        if deadline is not None and time.time() > deadline:
            log.warning("stopping at step %d: max_minutes=%s reached", step, cfg.max_minutes)
            break
    if bar:
        bar.close()
    if shards:
        data.close()
    report = {
        "recipe": recipe.name,
        "spec": spec.name,
        "steps": step,
        "total_steps": total,
        "world_size": world,
        "minutes": round((time.time() - started) / 60, 2),
        **({"shards": data.state(step)} if shards else {}),
    }
    if rank == 0:
        report["model"] = _finish(module, data, recipe, out, report, fsdd, mnist, dev)
    if world > 1:
        torch.distributed.barrier()
    return report


def _build(recipe: Recipe, spec, teacher, dev) -> tuple[TrainModule, torch.optim.Optimizer, bool]:
    """The model and heads (seeded from the recipe), on ``dev``, its optimizer, and whether bf16 autocast is on."""
    from edge_sdk.models.avnet import AVNet

    cfg = recipe.train
    torch.manual_seed(cfg.seed)
    model = AVNet(spec)
    if recipe.model.init:
        init_weights(model, recipe.model.init)
    module = TrainModule(model, recipe, teacher).to(dev)
    bf16 = _use_bf16(cfg.precision, dev)
    if bf16 and dev.type == "cpu":  # oneDNN's bf16 convolutions are fastest channels-last (2.8x fp32, measured)
        module.to(memory_format=torch.channels_last)
    if teacher is not None:
        teacher.to(dev)
    opt = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=cfg.lr, weight_decay=cfg.weight_decay)
    return module, opt, bf16


def _batch(data, recipe: Recipe, step: int, steps_per_epoch: int, rank: int, world: int, dev) -> tuple[int, dict[str, torch.Tensor]]:
    """The epoch of ``step`` and this process's share of its batch; torch's RNG re-seeded from the step (exact resume)."""
    cfg = recipe.train
    torch.manual_seed(cfg.seed * 1_000_003 + step * world + rank)
    if hasattr(data, "batch"):  # a stream (shards): its loader keeps its own place and draws no torch random numbers
        return data.batch(step)
    epoch, j = divmod(step, steps_per_epoch)
    data.set_epoch(epoch)
    data.set_k(recipe.data.k_curriculum[epoch] if epoch < len(recipe.data.k_curriculum) else recipe.data.k_mix or recipe.data.k)
    local = cfg.batch_size // world
    first = j * cfg.batch_size + rank * local
    return epoch, _collate([data[first + t] for t in range(local)], dev)


def _train_step(wrapped, module: TrainModule, opt, batch: dict, epoch: int, step: int, lr: float, bf16: bool, dev) -> dict[str, torch.Tensor]:
    """One optimizer step at learning rate ``lr``; the losses (a non-finite loss stops training)."""
    for g in opt.param_groups:
        g["lr"] = lr
    with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
        losses = wrapped(batch, epoch)
    if not torch.isfinite(losses["loss"]):
        raise EdgeSDKError(
            f"loss became {losses['loss'].item()} at step {step}", "lower [train] lr in the recipe, or resume from the last checkpoint"
        )
    opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    opt.step()
    module.after_step()
    return losses


def _device(device: str, world: int):
    """``auto`` (CUDA when there is one), ``cpu`` or ``cuda``; under DDP on GPUs, this process's own GPU."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    if dev.type == "cuda" and world > 1:
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return dev


def _progress(desc: str, total: int, step: int):
    from tqdm import tqdm

    return tqdm(total=total, initial=step, desc=desc, unit="step", dynamic_ncols=True)


def _restore(out: Path, recipe: Recipe, module, opt, data) -> int:
    """Load the last checkpoint of ``out`` into ``module`` and ``opt`` (refusing another recipe's run,
    or other shards); the step it reached."""
    from edge_sdk.train.shard_batches import check_resume

    state = _resume_state(out / "checkpoints" / "last.json", out)
    check_resume(state.get("shards"), data)
    before, now = _schedule(state["recipe"]), _schedule(recipe.to_dict())
    if before != now:
        changed = sorted(k for k in now if before.get(k) != now[k])
        raise EdgeSDKError(
            f"{out} was trained with another recipe (sections differ: {', '.join(changed)})",
            "resume with the same recipe and overrides, or start a new --out folder",
        )
    tensors = load_tensors(out / "checkpoints" / "last.safetensors")
    module.load_state_dict({k[len("module.") :]: v for k, v in tensors.items() if k.startswith("module.")})
    _load_optim(opt, tensors)
    step = state["step"]
    log.info("resuming %s at step %d", out, step)
    return step


def _trim_metrics(path: Path, step: int) -> None:
    """Drop the metrics rows of steps after ``step`` (all of them for a run starting over): a
    killed attempt logged them after its last checkpoint (or before its first), and they are
    about to be logged again."""
    if path.exists():
        rows = path.read_text().splitlines()
        atomic_write_text(path, "".join(r + "\n" for r in rows if _row_step(r) <= step))


def _wrap(module, recipe: Recipe, world: int, dev):
    """``module`` for the forward pass: itself, or DDP over ``world`` processes."""
    if world <= 1:
        return module
    # Objectives switched on in later epochs leave parameters unused before then.
    scheduled = any(c.start_epoch > 0 for c in recipe.objectives.values())
    return nn.parallel.DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None, find_unused_parameters=scheduled)


def _log_row(path: Path, row: dict, losses: dict, cfg, started: float, t_last: float) -> float:
    """Append one metrics row (time, throughput since ``t_last``, losses); the time it was taken."""
    now = time.time()
    row = {
        **row,
        "time_s": round(now - started, 2),
        "samples_per_s": round(cfg.log_every * cfg.batch_size / max(now - t_last, 1e-9), 1),
        **{k: round(v.item(), 5) for k, v in losses.items()},
    }
    with writing(path), path.open("a") as f:
        f.write(json.dumps(row) + "\n")
    return now


def _finish(module, data, recipe: Recipe, out: Path, report: dict, fsdd, mnist, dev) -> str:
    """Save the trained model (with its measured map offset) and its plots; the model file's path."""
    model = module.model.cpu()
    offset = _map_offset(model, data, recipe, fsdd, mnist)
    path = save_model(out / "model.safetensors", model, recipe.to_dict(), {"train": report, "map_offset_px": offset})
    plot_losses(out / "metrics.jsonl", out / "loss.png")
    if hasattr(data, "examples"):  # shards: windows of the first shards
        examples = data.examples()
    else:  # held-out scenes (test speakers and images), or the clips again
        examples = build_train_data(recipe, model.spec, fsdd, mnist, split="test", length=8, seed=recipe.train.seed + 1)
        examples.set_k(recipe.data.k)
    with writing(out / "heatmaps.png"):
        plot_heatmaps(model, examples, out / "heatmaps.png", offset)
    module.model.to(dev)
    return str(path)


def distill(recipe: Recipe, out: str | Path, fsdd=None, mnist=None, **kw) -> dict:
    """Distil ``recipe.distill.teacher`` into the recipe's student spec (same trainer as pretraining)."""
    if not recipe.distill.teacher:
        raise EdgeSDKError(f"recipe {recipe.name} names no teacher", "set [distill] teacher in the recipe, or pass --teacher")
    return pretrain(recipe, out, fsdd, mnist, **kw)


def load_teacher(name_or_path: str, student_spec) -> nn.Module:
    """The frozen teacher; it must take the student's inputs (they see the same batch: sample rate,
    window, image size, frames). Its own front end may differ (a student's cheaper STFT, other mels)."""
    from edge_sdk.models.shipped import resolve_model

    teacher, _ = resolve_model(name_or_path)
    ours, theirs = student_spec.contract(), teacher.contract
    diff = [f"{k}: {getattr(theirs.audio, k)} != {getattr(ours.audio, k)}" for k in ("sample_rate", "num_samples")
            if getattr(theirs.audio, k) != getattr(ours.audio, k)]  # fmt: skip
    diff += [f"image {k}: {v} != {ours.input_shapes[k]}" for k, v in theirs.input_shapes.items() if k == "image" and v != ours.input_shapes[k]]
    if diff:
        raise EdgeSDKError(
            f"teacher {name_or_path} ({teacher.spec.name}) and student {student_spec.name} take different inputs: {'; '.join(diff)}",
            "distil into a student spec with the teacher's sample rate, window and image size (edge-sdk info lists specs)",
        )
    return teacher


def init_weights(model: nn.Module, name_or_path: str) -> None:
    """Fine-tuning: copy the weights of a checkpoint (or shipped model) of the same architecture into ``model``."""
    from edge_sdk.models.shipped import resolve_model

    ours, theirs = model.state_dict(), resolve_model(name_or_path)[0].state_dict()
    diff = [k for k in sorted(set(ours) | set(theirs)) if k not in ours or k not in theirs or ours[k].shape != theirs[k].shape]
    if diff:
        raise EdgeSDKError(f"[model] init = {name_or_path} is not a {model.spec.name}: {len(diff)} tensors differ, e.g. {diff[0]}",
                           "start from a checkpoint of the recipe's [model] spec, or set spec to the checkpoint's")  # fmt: skip
    model.load_state_dict(theirs)


def _checkpoint(ckpt_dir: Path, module: TrainModule, opt, step: int, recipe: Recipe, data=None) -> None:
    tensors = {f"module.{k}": v for k, v in module.state_dict().items()}
    tensors.update(_optim_tensors(opt))
    save_tensors(ckpt_dir / "last.safetensors", tensors)
    where = {"shards": data.state(step)} if hasattr(data, "state") else {}  # a stream's position: exact resume
    atomic_write_text(ckpt_dir / "last.json", json.dumps({"step": step, "recipe": recipe.to_dict(), **where}))


def _schedule(recipe: dict) -> dict:
    """What a resumed run must share with the one it continues: the recipe less its time
    budget (``--max-minutes`` is how long this sitting may take, not what is trained)."""
    return {**recipe, "train": {k: v for k, v in recipe.get("train", {}).items() if k != "max_minutes"}}


def _resume_state(path: Path, out: Path) -> dict:
    """``checkpoints/last.json`` as :func:`_checkpoint` wrote it: the step and the recipe."""
    try:
        state = read_json(path, "checkpoint state")
    except ModelFileError:
        state = None
    if not (isinstance(state, dict) and isinstance(state.get("step"), int) and isinstance(state.get("recipe"), dict)):
        raise ModelFileError(
            f"{path} is damaged (not the step and recipe written with the last checkpoint)",
            f"restore it from a copy, or start over: delete {out} or choose another --out folder",
        )
    return state


def _row_step(line: str) -> float:
    """A metrics.jsonl row's step; a row cut short by a kill mid-write counts as after every checkpoint."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


def _map_offset(model, data, recipe: Recipe, fsdd, mnist, n: int = 48) -> list[int]:
    """Where the trained map's cells sit, measured without labels on training images: on AV-Digits as
    ``edge-sdk eval`` does (a nearly flat score: other images can pick another offset, README)."""
    from edge_sdk.eval.evaluate import map_offset_of
    from edge_sdk.objectives.zoom_equivariance import estimate_map_offset

    if recipe.data.kind == "scenes" and not hasattr(data, "batch"):
        offset = list(map_offset_of(model, fsdd, mnist, n, tuple(recipe.data.test_speakers)))
    else:  # AV-Digits clips (frame stacks), the user's clips or shards: their own images
        offset = list(estimate_map_offset(model, torch.from_numpy(np.stack([data[i]["image"] for i in range(min(n, len(data)))]))))
    model.train()
    return offset


def _shard_batches(shards, recipe: Recipe, spec, rank: int, world: int, dev, out: Path):
    """The training data streamed from ``shards`` (:mod:`edge_sdk.train.shard_batches`)."""
    from edge_sdk.train.shard_batches import ShardBatches

    if "sync" in recipe.objectives:
        raise EdgeSDKError(
            "the sync objective needs AV-Digits clips (time-shifted sound); shards give frame and sound windows",
            "leave [objectives.sync] out of the recipe",
        )
    return ShardBatches(shards, spec, recipe.train.batch_size, recipe.train.seed, rank, world, dev, out)
