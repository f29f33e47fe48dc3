"""The training loop: one obvious path from chips to checkpoints, history and curves."""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .augment import Augment
from .budget import PROBE_FROM, PROBE_STEPS, epoch_seconds, epochs_that_fit, recent_epoch_seconds
from .checkpoint import save_checkpoint
from .errors import DataError, Interrupted
from .resume import StopRequest, remove_training_state, save_training_state
from .config import Recipe
from .data.cache import Chips
from .inference import to_input
from .atomic import write_csv_atomic
from .head import Head, head_of
from .metrics import accumulator
from .models import build_model, count_parameters
from .distributed import World
from .runfolder import RunFolder
from .runtime import Runtime
from .progress import bar as progress_bar

HISTORY_FIELDS = ["epoch", "train_loss", "val_loss", "val_miou", "val_water_iou", "lr", "seconds", "images_per_s"]


def loss_fn(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce", head: Head | None = None,
            pixel_weights: torch.Tensor | None = None) -> torch.Tensor:
    """The loss of these logits (by default their channel count says binary or multi-class): see head.Head.loss."""
    return (head or Head(logits.shape[1])).loss(logits, target, kind, pixel_weights)


def make_scheduler(opt: torch.optim.Optimizer, recipe: Recipe, steps_per_epoch: int, mode: str,
                   epochs: int | None = None):
    """The LR schedule over `epochs` (the recipe's by default): plateau steps once an epoch on the monitored
    figure; the others step every batch."""
    if recipe.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode=mode, factor=recipe.plateau_factor, patience=recipe.plateau_patience,
            threshold=1e-4, threshold_mode="abs")  # Keras: min_delta=1e-4, absolute
    total = (epochs or recipe.epochs) * steps_per_epoch
    if recipe.schedule == "onecycle":  # warm-up of at least 2 steps: shorter ones divide by zero inside
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=max(total, 6),
                                                   pct_start=max(0.2, 2.5 / max(total, 6)))
    if recipe.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    if recipe.schedule == "none":
        return None
    raise ValueError(f"unknown schedule {recipe.schedule!r} (plateau, onecycle, cosine, none)")


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    if recipe.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    if recipe.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    raise ValueError(f"unknown optimizer {recipe.optimizer!r} (adam, adamw)")


@torch.inference_mode()
def validate(model: nn.Module, chips: Chips, rt: Runtime, batch_size: int, head: Head,
             loss_kind: str = "bce") -> dict:
    """Mean loss and confusion-matrix scores over a set of chips, predictions thresholded at 0.5."""
    model.eval()
    acc = accumulator(head)
    total, n = 0.0, 0
    for i in range(0, len(chips.stems), batch_size):
        x = to_input(chips.images[i:i + batch_size], rt.device)
        y = torch.as_tensor(np.asarray(chips.masks[i:i + batch_size]), device=rt.device)
        with rt.autocast():
            logits = model(x)
        total += loss_fn(logits, y, loss_kind, head).item() * len(x)
        n += len(x)
        acc.update(head.classes(head.probabilities(logits)), y)
    return {"loss": total / max(n, 1), **acc.scores()}


@dataclass
class EarlyStopper:
    """Stops after `patience` epochs without improvement of the monitored figure (0 = never)."""

    patience: int
    mode: str  # "min" or "max"
    best: float = math.nan
    bad_epochs: int = 0

    def improved(self, value: float) -> bool:
        better = math.isnan(self.best) or (value < self.best if self.mode == "min" else value > self.best)
        if better:
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        return better

    @property
    def should_stop(self) -> bool:
        return self.patience > 0 and self.bad_epochs >= self.patience


def write_history(path: Path, rows: list[dict]) -> None:
    write_csv_atomic(path, HISTORY_FIELDS, rows)


def epoch_batches(n: int, recipe: Recipe, epoch: int, gen: torch.Generator, world: World) -> list[torch.Tensor]:
    """This process's batches of chip indices for one epoch.

    One process: a seeded shuffle cut into recipe.batch_size. Under torchrun: DistributedSampler's shuffle,
    each rank taking batch_size / world size of every global batch, so together the ranks see the same
    global batches as one process using the same sampler.
    """
    if not world.distributed:
        return list(torch.randperm(n, generator=gen).split(recipe.batch_size))
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(n), num_replicas=world.size, rank=world.rank, shuffle=True,
                                 seed=recipe.seed)
    sampler.set_epoch(epoch)
    return list(torch.tensor(list(sampler)).split(recipe.batch_size // world.size))


@dataclass
class TrainingState:
    """Everything training changes: model, optimizer, schedule, scaler, early stopping, history, data order,
    the running loss of the epoch. `state_dict` and `load_state_dict` round-trip it exactly (train --resume)."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    stopper: EarlyStopper
    gen: torch.Generator  # the data order
    history: list[dict] = field(default_factory=list)
    best_info: dict = field(default_factory=dict)
    epoch: int = 1  # where to go on: this epoch...
    step: int = 0  # ...at this step (0: the epoch has not begun)
    loss_sum: float = 0.0  # the running sums of the epoch (over all processes when saved)
    seen: int = 0
    epoch_seconds: float = 0.0  # time already spent in this epoch before an interruption
    elapsed: float = 0.0  # training time before this process started
    epochs: int = 0  # the epochs planned: the recipe's, or fewer to end within its time budget (--minutes)

    def state_dict(self, world: World, epoch: int, step: int, epoch_gen: torch.Tensor, epoch_seconds: float,
                   elapsed: float) -> dict:
        """Everything needed to go on at `step` of `epoch`; `epoch_gen` is the data-order state at its start."""
        total_loss, total_seen = world.sum(self.loss_sum, self.seen)
        return {"epoch": epoch, "step": step, "model": self.model.state_dict(), "optimizer": self.opt.state_dict(),
                "scheduler": self.sched.state_dict() if self.sched is not None else None,
                "scaler": self.scaler.state_dict(), "stopper": (self.stopper.best, self.stopper.bad_epochs),
                "history": self.history, "best_info": self.best_info, "loss_sum": total_loss,
                "seen": int(total_seen), "epoch_seconds": epoch_seconds, "elapsed": elapsed, "generator": epoch_gen,
                "torch_rng": torch.get_rng_state(), "processes": world.size,
                "epochs": self.epochs}

    def load_state_dict(self, d: dict, world: World) -> None:
        self.model.load_state_dict(d["model"])
        self.opt.load_state_dict(d["optimizer"])
        if self.sched is not None:
            self.sched.load_state_dict(d["scheduler"])
        self.scaler.load_state_dict(d["scaler"])
        self.stopper.best, self.stopper.bad_epochs = d["stopper"]
        self.history, self.best_info = d["history"], d["best_info"]
        self.epoch, self.step = d["epoch"], d["step"]
        if world.main:  # the saved sums are over all processes
            self.loss_sum, self.seen = d["loss_sum"], d["seen"]
        self.epoch_seconds, self.elapsed = d["epoch_seconds"], d["elapsed"]
        self.epochs = d.get("epochs", self.epochs)  # a state saved before time budgets: the recipe's epochs
        self.gen.set_state(d["generator"])
        torch.set_rng_state(d["torch_rng"])


def new_training(recipe: Recipe, rt: Runtime, steps_per_epoch: int, log: Callable[[str], None],
                 resume: dict | None = None) -> TrainingState:
    """The model (seeded), optimizer, schedule, scaler and early stopping of a recipe."""
    torch.manual_seed(recipe.seed)
    model = build_model(recipe.model)
    if recipe.model.encoder_weights and resume is None:
        if not hasattr(model, "load_vgg11"):
            raise ValueError(f"--encoder-weights applies to ternausnet, not {recipe.model.name}")
        log(f"encoder weights: {model.load_vgg11(recipe.model.encoder_weights)} tensors from "
            f"{recipe.model.encoder_weights}")
    model = model.to(rt.device, memory_format=torch.channels_last)
    opt = make_optimizer(model, recipe)
    mode = "min" if recipe.monitor == "val_loss" else "max"
    return TrainingState(model, opt, make_scheduler(opt, recipe, steps_per_epoch, mode),
                         torch.amp.GradScaler(enabled=rt.precision == "fp16"),
                         EarlyStopper(recipe.early_stopping_patience, mode), torch.Generator().manual_seed(recipe.seed),
                         epochs=recipe.epochs)


@dataclass
class Context:
    """What an epoch needs besides the state: the data, the settings, where to write."""

    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    head: Head
    recipe: Recipe
    rt: Runtime
    world: World
    run_dir: Path
    augment: nn.Module | None
    log: Callable[[str], None]
    progress: bool
    chip_augment: nn.Module | None = None  # for the first n_chips images of an epoch, when scene crops follow
    n_chips: int = 0
    n_val: int = 0  # validation images (their cost counts in a time budget's plan)

    @property
    def per_batch(self) -> bool:
        return self.recipe.schedule not in ("plateau", "none")


def train_epoch(st: TrainingState, ctx: Context, images: torch.Tensor, masks: torch.Tensor, stop: StopRequest,
                t0: float, started: float, weights: torch.Tensor | None = None) -> int:
    """The steps of epoch st.epoch from st.step on; returns the number of batches. A non-finite loss raises
    Diverged before the weights change; Ctrl-C / SIGTERM saves the state at the next step and raises Interrupted."""
    recipe, world = ctx.recipe, ctx.world
    epoch_gen = st.gen.get_state()
    batches = epoch_batches(len(images), recipe, st.epoch, st.gen, world)
    bar = progress_bar(batches, enabled=ctx.progress, desc=f"epoch {st.epoch}/{st.epochs}", unit="batch",
                       leave=False, dynamic_ncols=True, initial=st.step)
    probe = None  # with a time budget: when the first epoch's timed steps began
    for step, idx in enumerate(batches[st.step:], start=st.step):
        x = to_input(images[idx], ctx.rt.device)
        y = masks[idx].to(ctx.rt.device)
        w = None if weights is None else weights[idx].to(ctx.rt.device).float()
        if ctx.augment is not None:
            x, y, w = augment_batch(ctx, x, y, w, idx)
        with ctx.rt.autocast():
            logits = ctx.net(x)
        loss = loss_fn(logits, y, recipe.loss, ctx.head, w)
        value = loss.item()
        bad = not math.isfinite(value)
        if world.distributed:  # every process must take the same decision at the same step
            bad = world.sum(float(bad))[0] > 0
        if bad:
            raise Diverged(diverged_message(ctx.run_dir, st.epoch, step + 1, value, st.history))
        st.opt.zero_grad(set_to_none=True)
        st.scaler.scale(loss).backward()
        st.scaler.step(st.opt)
        st.scaler.update()
        if ctx.per_batch:
            st.sched.step()
        st.seen += len(idx)
        st.loss_sum += value * len(idx)
        bar.set_postfix(loss=f"{st.loss_sum / st.seen:.4f}", img_s=f"{st.seen / (time.perf_counter() - t0):.1f}",
                        refresh=False)  # shown with the count, at the bar's own pace (a log: once a minute)
        bar.update()
        if recipe.minutes and not st.history and step + 1 in (PROBE_FROM, PROBE_FROM + PROBE_STEPS) \
                and step + 1 < len(batches):
            probe = plan_from_probe(st, ctx, step + 1, len(batches), probe, started)
        if step + 1 < len(batches) and stop_now(stop, world):
            bar.close()
            snapshot = st.state_dict(world, st.epoch, step + 1, epoch_gen, time.perf_counter() - t0,
                                     st.elapsed + time.perf_counter() - started)
            if world.main:
                save_training_state(ctx.run_dir, snapshot)
            raise Interrupted(interrupted_message(ctx.run_dir, st.epoch, step + 1, len(batches)))
    bar.close()
    return len(batches)


def plan_from_probe(st: TrainingState, ctx: Context, steps_done: int, steps: int, probe: float | None,
                    started: float) -> float | None:
    """The first epoch's pace, timed over PROBE_STEPS steps after the warm-up, plans the budget's epochs (before a
    whole epoch has gone by); returns when the timed steps began."""
    now = time.perf_counter()
    if steps_done == PROBE_FROM:
        return now
    if probe is not None:  # None: resumed in the middle of the timed steps; the epoch's end plans instead
        epoch_s = epoch_seconds((now - probe) / PROBE_STEPS, steps, ctx.recipe.batch_size, ctx.n_val)
        fit_to_budget(st, ctx, steps, epoch_s, st.elapsed + now - started, 0, steps_done)
    return None


def fit_to_budget(st: TrainingState, ctx: Context, steps_per_epoch: int, epoch_s: float, spent_s: float,
                  done_epochs: int, done_steps: int) -> None:
    """Plan the epochs that end within the time budget (rank 0's plan, everywhere) and fit the per-batch LR
    schedule to them, going on from the `done_steps` training has taken."""
    recipe = ctx.recipe
    budget_s = recipe.minutes * 60
    planned = epochs_that_fit(budget_s, spent_s, done_epochs, epoch_s, recipe.epochs)
    planned = int(ctx.world.broadcast(planned)[0])
    if planned == st.epochs:
        return
    if planned <= done_epochs:
        ctx.log(f"time budget {recipe.minutes:g} min: stopping after epoch {done_epochs} of {recipe.epochs}; "
                f"another would take ~{epoch_s / 60:.1f} min of the {max(budget_s - spent_s, 0) / 60:.1f} left")
    else:
        ctx.log(f"time budget {recipe.minutes:g} min: {planned} of {recipe.epochs} epochs fit at "
                f"~{epoch_s / 60:.1f} min each ({spent_s / 60:.1f} min spent)")
    st.epochs = planned
    if ctx.per_batch and planned > done_epochs:  # the same schedule, shorter or longer, at the step reached
        for group in st.opt.param_groups:  # from its first step again (cosine steps from the LR it finds)
            group["lr"] = group.get("initial_lr", group["lr"])
        st.sched = make_scheduler(st.opt, recipe, steps_per_epoch, "max", planned)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "scheduler stepped before the optimizer": it is catching up
            for _ in range(done_steps):
                st.sched.step()


def augment_batch(ctx: Context, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None,
                  idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The batch augmented; with a chip augmentation, the chips (indices below n_chips) get theirs and the scene
    crops the recipe's, and the batch comes back chips first (the order within a batch does not matter)."""
    if w is not None:
        return ctx.augment(x, y, w)
    if ctx.chip_augment is None:
        return (*ctx.augment(x, y), None)
    chip = (idx < ctx.n_chips).to(x.device)
    parts = [aug(x[rows], y[rows]) for aug, rows in ((ctx.chip_augment, chip), (ctx.augment, ~chip)) if rows.any()]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]), None


def time_left(history: list[dict], epochs: int) -> str:
    """'  ~N min left' at the epochs' mean duration so far (early stopping may end sooner); '' after the last."""
    left = epochs - history[-1]["epoch"]
    if left <= 0:
        return ""
    minutes = left * sum(r["seconds"] for r in history) / len(history) / 60
    return f"  ~{minutes:.0f} min left" if minutes >= 1 else f"  ~{minutes * 60:.0f} s left"


def end_epoch(st: TrainingState, ctx: Context, val_chips: Chips, t0: float, started: float, board: Any) -> bool:
    """Validate (rank 0), add the history row, write checkpoints and history, log, step the schedule; True when
    early stopping ends training."""
    recipe, world, epoch = ctx.recipe, ctx.world, st.epoch
    train_seconds = time.perf_counter() - t0
    st.loss_sum, st.seen = world.sum(st.loss_sum, st.seen)  # over all processes: the global batch's loss
    val = validate(st.model, val_chips, ctx.rt, recipe.batch_size, ctx.head, recipe.loss) \
        if world.main else {}
    if world.distributed:  # rank 0 validated; everyone takes the same decisions from its figures
        shared = world.broadcast(val.get("loss", 0.0), val.get("mean_iou", 0.0), val.get("water_iou", math.nan))
        val = {**val, "loss": shared[0], "mean_iou": shared[1], "water_iou": shared[2]}
    row = {"epoch": epoch, "train_loss": round(st.loss_sum / st.seen, 6), "val_loss": round(val["loss"], 6),
           "val_miou": round(val["mean_iou"], 6), "val_water_iou": round(val.get("water_iou", float("nan")), 6),
           "lr": st.opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2),
           "images_per_s": round(st.seen / train_seconds, 2)}
    st.loss_sum, st.seen = 0.0, 0
    st.history.append(row)
    if board is not None:
        for key in ("train_loss", "val_loss", "val_miou", "val_water_iou", "lr", "images_per_s"):
            board.add_scalar(key, row[key], epoch)
    monitored = row["val_loss"] if recipe.monitor == "val_loss" else row["val_miou"]
    info = {"epoch": epoch, "recipe": recipe.to_dict(), "validation": val, "runtime": ctx.rt.describe(),
            "train_seconds_so_far": round(st.elapsed + time.perf_counter() - started, 1)}
    improved = st.stopper.improved(monitored)
    if improved:
        st.best_info = info
    if world.main:
        if improved:
            save_checkpoint(ctx.run_dir, "best", st.model, info)
        save_checkpoint(ctx.run_dir, "last", st.model, info)
        write_history(RunFolder(ctx.run_dir).history_path, st.history)
    ctx.log(f"epoch {epoch:>3}/{st.epochs}  train loss {row['train_loss']:.4f}  val loss {row['val_loss']:.4f}  "
            f"val mIoU {row['val_miou']:.4f}  {row['images_per_s']:.1f} img/s  {row['seconds']:.0f}s"
            + ("  *best" if improved else "") + time_left(st.history, st.epochs))
    if st.sched is not None and not ctx.per_batch:
        st.sched.step(monitored)
    if st.stopper.should_stop:
        ctx.log(f"early stop: {recipe.monitor} did not improve for {recipe.early_stopping_patience} epochs")
        return True
    return False


def train(train_chips: Chips, val_chips: Chips, recipe: Recipe, run_dir: Path, rt: Runtime,
          progress: bool = True, log: Callable[[str], None] = print, tensorboard_dir: Path | None = None,
          world: World = World(), resume: dict | None = None,
          extra: Callable[[int], tuple[np.ndarray, np.ndarray]] | None = None, extra_count: int = 0,
          init_state: dict[str, torch.Tensor] | None = None) -> dict:
    """Train `recipe` on the chips; write best/last checkpoints, history.csv and curves.png into run_dir.

    `extra(epoch)` gives `extra_count` more (images, labels) for that epoch (random crops of scenes), mixed
    with the chips; it must be deterministic in the epoch, so that a resumed run sees the same data.

    At the end of every epoch (and on Ctrl-C / SIGTERM, at the next step) the whole training state is saved
    to RUN/resume.*; `resume` (that state, loaded) continues exactly where it stopped. A non-finite loss stops
    training before it reaches the weights. Under torchrun (world.distributed) the model is wrapped in
    DistributedDataParallel and each process trains on its share of every global batch; rank 0 alone
    validates, logs and writes. `init_state`: weights to start from (fine-tuning) instead of random ones.
    """
    from .figures import plot_curves

    if world.distributed and recipe.batch_size % world.size:
        raise ValueError(f"batch size {recipe.batch_size} does not split evenly over {world.size} processes")
    log = log if world.main else (lambda m: None)
    n_train = len(train_chips.stems) + (extra_count if extra is not None else 0)
    st = new_training(recipe, rt, len(epoch_batches(n_train, recipe, 0, torch.Generator(), world)), log, resume)
    if init_state is not None and resume is None:
        st.model.load_state_dict(init_state)
    net = st.model
    if world.distributed:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(st.model, device_ids=[rt.device.index] if rt.device.type == "cuda" else None)
    augment = Augment(recipe.augment, recipe.model.in_channels).to(rt.device) if recipe.augment else None
    chip_augment = Augment(recipe.chip_augment, recipe.model.in_channels).to(rt.device) \
        if recipe.augment and recipe.chip_augment and extra is not None else None
    ctx = Context(net, head_of(recipe.model), recipe, rt, world, run_dir, augment, log, progress and world.main,
                  chip_augment, len(train_chips.stems), len(val_chips.stems))
    log(f"model {recipe.model.name}: {count_parameters(st.model):,} parameters; {rt.describe()}")
    more = f" + {extra_count} scene crops per epoch" if extra is not None else ""
    log(f"train {len(train_chips.stems)} chips{more}, validate {len(val_chips.stems)}, "
        f"{recipe.epochs} epochs of batch {recipe.batch_size} at {recipe.image_size} px"
        + (f", at most {recipe.minutes:g} min" if recipe.minutes else ""))

    images = torch.from_numpy(np.ascontiguousarray(train_chips.images))
    masks = torch.from_numpy(np.ascontiguousarray(train_chips.masks))
    weights = None if train_chips.weights is None or not recipe.border_weight else \
        torch.from_numpy(np.ascontiguousarray(train_chips.weights))
    if weights is not None and extra is not None:
        raise ValueError("border weights apply to chips only, not to scene crops")
    if resume is not None:
        st.load_state_dict(resume, world)
        log(f"resuming at epoch {st.epoch}, step {st.step}")
    board = None
    if tensorboard_dir is not None and world.main:
        from torch.utils.tensorboard import SummaryWriter

        board = SummaryWriter(str(tensorboard_dir))
    started = time.perf_counter()
    with StopRequest(log) as stop:
        while st.epoch <= st.epochs:  # the epochs planned may change on the way (a time budget)
            epoch = st.epoch
            net.train()
            t0 = time.perf_counter() - st.epoch_seconds
            epoch_images, epoch_masks = images, masks
            if extra is not None:
                more_images, more_masks = extra(epoch)
                epoch_images = torch.cat([images, torch.from_numpy(more_images)])
                epoch_masks = torch.cat([masks, torch.from_numpy(more_masks)])
            steps = train_epoch(st, ctx, epoch_images, epoch_masks, stop, t0, started, weights)
            st.step, st.epoch_seconds = 0, 0.0
            if end_epoch(st, ctx, val_chips, t0, started, board):
                break
            if recipe.minutes:
                fit_to_budget(st, ctx, steps, recent_epoch_seconds(st.history),
                              st.elapsed + time.perf_counter() - started, epoch, epoch * steps)
            if epoch < st.epochs:
                snapshot = st.state_dict(world, epoch + 1, 0, st.gen.get_state(), 0.0,
                                         st.elapsed + time.perf_counter() - started)
                if world.main:
                    save_training_state(run_dir, snapshot)
                if stop_now(stop, world):
                    raise Interrupted(interrupted_message(run_dir, epoch + 1, 0, steps))
            st.epoch = epoch + 1
    if board is not None:
        board.close()
    if world.main:
        plot_curves(st.history, run_dir / "curves.png")
        remove_training_state(run_dir)  # finished: nothing to resume
    return {"history": st.history, "best": st.best_info,
            "seconds": round(st.elapsed + time.perf_counter() - started, 1), "parameters": count_parameters(st.model)}


def stop_now(stop: StopRequest, world: World) -> bool:
    """Whether Ctrl-C / SIGTERM reached this process (under torchrun: any process, so that all stop together)."""
    return world.sum(float(stop.asked))[0] > 0 if world.distributed else stop.asked


def interrupted_message(run_dir: Path, epoch: int, step: int, steps: int) -> str:
    return (f"stopped before step {step + 1} of {steps} in epoch {epoch}; the training state is saved in "
            f"{run_dir}/resume.safetensors. Continue with: unetseg train --resume {run_dir}")


class Diverged(DataError):
    """The loss stopped being a finite number."""


def diverged_message(run_dir: Path, epoch: int, step: int, value: float, history: list[dict]) -> str:
    last = (f"{run_dir}/last.safetensors (epoch {history[-1]['epoch']}) is the last good checkpoint"
            if history else "no checkpoint was written (it diverged in the first epoch)")
    return (f"epoch {epoch}, step {step}: the loss is {value} (not finite); training stopped before updating "
            f"the weights. {last}. Try a lower --lr, or check the data")
