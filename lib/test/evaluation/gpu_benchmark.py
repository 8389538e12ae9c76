"""What a GPU machine does with our networks, measured in one short run with random weights (``gpu_benchmark.py``).

Sections, each a list of rows (setting, ms, frames/s, speed relative to a reference row of the same model):

* ``forward``: batch-1 network forward of LoReTrack-256/192/128/96 and OSTrack-384 (CE), eager, in fp32 and under
  bf16 / fp16 autocast; median of synchronised per-call times after warm-up.
* ``batched``: LoReTrack-128 at batch 1, 2, 4, ... (frames/s = batch / call time), fp32 and autocast.
* ``train``: one LoReTrack-128 training step (student forward + frozen OSTrack-384 teacher + task losses + QKV-KD +
  Disc-KD, backward, gradient clipping, AdamW) through the library's own trainer, actor and distiller; fp32, bf16
  autocast (no loss scaling) and fp16 autocast (the trainer's GradScaler).
* ``distributed``: a one-process ``init_process_group`` (NCCL on CUDA, gloo on CPU) and its first all_reduce.
* ``cuda_graph``: the batch-1 forward captured once into a CUDA graph; each call copies the new crops into the static
  inputs and replays it. LoReTrack-128 and OSTrack-384 only.
* ``compile``: ``torch.compile`` of the same two networks (``reduce-overhead`` by default: inductor kernels replayed
  through CUDA graphs, the mode meant for small-batch latency; its compile time is in the row's note).

Without a CUDA GPU the run is a smoke test of every code path on 2-block, 32-wide versions of the same configs with
small crops (:data:`SMOKE_OVERRIDES`, one thread): fp32 and bf16 autocast, the CUDA-graph wrapper's static-buffer replay
without a capture, batches 1..4, the training step under bf16 autocast, gloo; torch.compile and fp16 are skipped
with the reason. A step that fails, or would not fit in the time budget, becomes one ``skipped`` line and the run
goes on.
"""
from __future__ import annotations

import math
import platform
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch

from lib.config import Config, load_config
from lib.models import OSTrack, build_model, crop_sizes
from lib.utils.errors import UserError
from lib.utils.paths import REPO_ROOT
from lib.utils.profiling import Timing, time_callable

SECTIONS = ("forward", "batched", "train", "distributed", "cuda_graph", "compile")
COMPILE_MODES = ("reduce-overhead", "max-autotune-no-cudagraphs")
DEFAULT_BUDGET_S = 300.0
PRECISIONS: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISION_LABELS = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast"}
TEACHER_DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}  # DISTILL.TEACHER.DTYPE values
COMPILE_PRECISIONS = ("fp32", "bf16")
TRAIN_LOSSES = ("Loss/total", "Loss/qkv_kd", "Loss/disc_kd")  # the actor's status keys a training row reports
ALL_REDUCE_ELEMENTS = 1 << 20  # 4 MiB of fp32: a gradient bucket's order of size


@dataclass(frozen=True)
class ModelSpec:
    name: str
    script: str
    config: str


MODELS = (ModelSpec("LoReTrack-256", "loretrack", "loretrack_256"),
          ModelSpec("LoReTrack-192", "loretrack", "loretrack_192"),
          ModelSpec("LoReTrack-128", "loretrack", "loretrack_128"),
          ModelSpec("LoReTrack-96", "loretrack", "loretrack_96"),
          ModelSpec("OSTrack-384", "ostrack", "vitb_384_mae_ce_32x4_ep300"))
GRAPH_MODELS = ("LoReTrack-128", "OSTrack-384")  # CUDA graphs and torch.compile
BATCHED_MODEL = "LoReTrack-128"
TRAIN_MODEL = "LoReTrack-128"  # its config names the teacher (OSTrack-384 without CE)
SPECS = {spec.name: spec for spec in MODELS}

# The smoke test's networks: the same configs, 2 blocks of width 32, CE (where the config has it) in block 1, and
# crops of (template, search) 32/64 px, or 64/128 for the 384 px networks (so a teacher still sees more pixels than
# its student). One thread: on a busy CI machine two threads run such small networks several times slower.
SMOKE_OVERRIDES = {"MODEL.BACKBONE.DEPTH": 2, "MODEL.BACKBONE.EMBED_DIM": 32, "MODEL.BACKBONE.NUM_HEADS": 2,
                   "MODEL.HEAD.NUM_CHANNELS": 16}
SMOKE_CE_OVERRIDES = {"MODEL.BACKBONE.CE_LOC": [1], "MODEL.BACKBONE.CE_KEEP_RATIO": [0.7]}
SMOKE_CROPS = {"small": (32, 64), "large": (64, 128)}  # large: networks whose search crop exceeds 256 px
SMOKE_THREADS = 1


@dataclass(frozen=True)
class ModeDefaults:
    """Counts of a full (GPU) run and of a smoke run, and what each kind of step is expected to cost (seconds):
    a step starts only if that much of the budget is left."""

    warmup: int
    iterations: int
    max_batch: int
    train_batch: int | None  # None: the config's TRAIN.BATCH_SIZE
    train_warmup: int
    train_steps: int
    row_cap_s: float  # timed calls of one row stop after about this long (at least MIN_ITERATIONS)
    estimates_s: dict[str, float]


FULL = ModeDefaults(warmup=20, iterations=100, max_batch=64, train_batch=None, train_warmup=3, train_steps=10,
                    row_cap_s=3.0, estimates_s={"forward": 8, "batched": 40, "train": 30, "distributed": 10,
                                                "cuda_graph": 6, "compile": 90})
SMOKE = ModeDefaults(warmup=1, iterations=3, max_batch=4, train_batch=2, train_warmup=1, train_steps=2,
                     row_cap_s=0.5, estimates_s={"forward": 0.5, "batched": 0.5, "train": 2, "distributed": 1,
                                                 "cuda_graph": 0.5, "compile": 60})
MIN_ITERATIONS = 3


@dataclass
class GpuBenchmarkSettings:
    """What the command line chooses; None means the mode's default (:data:`FULL` or :data:`SMOKE`)."""

    device: str = "auto"  # auto: cuda when available, else a CPU smoke run
    smoke: bool = False
    budget_s: float = DEFAULT_BUDGET_S
    sections: Sequence[str] = SECTIONS
    compile_mode: str = COMPILE_MODES[0]
    warmup: int | None = None
    iterations: int | None = None
    max_batch: int | None = None
    train_batch: int | None = None
    train_steps: int | None = None
    threads: int | None = None


@dataclass
class Row:
    section: str
    model: str
    setting: str
    batch: int | None
    ms: float
    fps: float | None  # frames/s (samples/s for a training step); None where no frames flow
    ratio: float | None = None  # fps over the reference row's fps (>1: faster); None without a reference
    reference: str | None = None  # which row the ratio compares with
    note: str = ""
    details: dict[str, float] = field(default_factory=dict)  # training rows: the step's losses, the teacher's share


@dataclass
class Skip:
    section: str
    model: str
    setting: str
    reason: str


@dataclass
class GpuBenchmarkResult:
    environment: dict[str, Any]
    settings: dict[str, Any]
    rows: list[Row] = field(default_factory=list)
    skipped: list[Skip] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON report: every section present (an empty list where all its steps were skipped)."""
        sections = {name: [asdict(row) for row in self.rows if row.section == name] for name in SECTIONS}
        return {"environment": self.environment, "settings": self.settings, "sections": sections,
                "skipped": [asdict(skip) for skip in self.skipped], "elapsed_s": self.elapsed_s}


# ------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class ResolvedSettings:
    device: torch.device
    smoke: bool
    budget_s: float
    sections: tuple[str, ...]
    compile_mode: str
    warmup: int
    iterations: int
    batch_sizes: tuple[int, ...]
    train_batch: int | None
    train_warmup: int
    train_steps: int
    row_cap_s: float
    estimates_s: dict[str, float]


def resolve_settings(settings: GpuBenchmarkSettings) -> ResolvedSettings:
    """Check the settings (UserError naming the fix) and fill in the mode's defaults."""
    if settings.device not in ("auto", "cuda", "cpu"):
        raise UserError(f"--device must be auto, cuda or cpu, got '{settings.device}'")
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda asked for, but CUDA is not available; use --device auto for a CPU smoke run")
    unknown = [name for name in settings.sections if name not in SECTIONS]
    if unknown or not settings.sections:
        raise UserError(f"--sections: unknown {unknown or 'empty list'}; choose from {', '.join(SECTIONS)}")
    if settings.compile_mode not in COMPILE_MODES:
        raise UserError(f"--compile_mode must be one of {', '.join(COMPILE_MODES)}, got '{settings.compile_mode}'")
    if not settings.budget_s > 0:
        raise UserError(f"--budget_s must be positive, got {settings.budget_s}")
    for name in ("warmup", "iterations", "max_batch", "train_batch", "train_steps", "threads"):
        value = getattr(settings, name)
        least = 0 if name == "warmup" else 1
        if value is not None and value < least:
            raise UserError(f"--{name} must be at least {least}, got {value}")
    use_cuda = settings.device != "cpu" and torch.cuda.is_available()
    smoke = settings.smoke or not use_cuda
    mode = SMOKE if smoke else FULL
    max_batch = settings.max_batch or mode.max_batch
    batch_sizes = tuple(2 ** i for i in range(int(math.log2(max_batch)) + 1))
    return ResolvedSettings(
        device=torch.device("cuda" if use_cuda else "cpu"), smoke=smoke, budget_s=float(settings.budget_s),
        sections=tuple(name for name in SECTIONS if name in settings.sections), compile_mode=settings.compile_mode,
        warmup=mode.warmup if settings.warmup is None else settings.warmup,
        iterations=settings.iterations or mode.iterations, batch_sizes=batch_sizes,
        train_batch=settings.train_batch or mode.train_batch, train_warmup=mode.train_warmup,
        train_steps=settings.train_steps or mode.train_steps, row_cap_s=mode.row_cap_s,
        estimates_s=dict(mode.estimates_s))


# ------------------------------------------------------------------------------------------------ building
def model_config(spec: ModelSpec, smoke: bool, overrides: dict[str, Any] | None = None) -> Config:
    """``spec``'s config (pre-trained weights off); in a smoke run shrunk to 2 blocks of width 32, the teacher it
    names too."""
    extra: dict[str, Any] = {"MODEL.PRETRAIN_FILE": "", **(overrides or {})}
    if smoke:
        extra.update(smoke_overrides(load_config(spec.config, script=spec.script)))
        full = load_config(spec.config, overrides=extra, script=spec.script)
        if full.DISTILL.ENABLED:
            teacher = full.DISTILL.TEACHER
            teacher_cfg = load_config(teacher.CONFIG, overrides=list(teacher.OVERRIDES), script=teacher.SCRIPT)
            extra["DISTILL.TEACHER.OVERRIDES"] = [*teacher.OVERRIDES, *(
                f"{key}={value}" for key, value in smoke_overrides(teacher_cfg).items())]
    return load_config(spec.config, overrides=extra, script=spec.script)


def smoke_overrides(cfg: Config) -> dict[str, Any]:
    overrides: dict[str, Any] = dict(SMOKE_OVERRIDES)
    if cfg.MODEL.BACKBONE.TYPE.endswith("_ce"):
        overrides.update(SMOKE_CE_OVERRIDES)
    template, search = SMOKE_CROPS["large" if crop_sizes(cfg)[1] > 256 else "small"]
    overrides.update({"DATA.TEMPLATE.SIZE": template, "DATA.SEARCH.SIZE": search, "TEST.TEMPLATE_SIZE": template,
                      "TEST.SEARCH_SIZE": search})
    return overrides


def autocast(device: torch.device, precision: str, cache_enabled: bool = True) -> Any:
    dtype = PRECISIONS[precision]
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None,
                          cache_enabled=cache_enabled)


def example_inputs(model: OSTrack, batch: int, device: torch.device) -> tuple[torch.Tensor | None, ...]:
    return tuple(model.example_inputs(batch, device=device, generator=torch.Generator().manual_seed(0)))


def eager_forward(model: OSTrack, inputs: Sequence[torch.Tensor | None], device: torch.device,
                  precision: str) -> Callable[[], Any]:
    def forward() -> Any:
        with torch.no_grad(), autocast(device, precision):
            return model(*inputs)

    return forward


class GraphedForward:
    """A batch-1 forward captured once into a CUDA graph: each call copies new crops into the static inputs and
    replays it (what a tracker would do per frame).

    A forward that synchronises with the host (data-dependent shapes) cannot be captured; the warm-up runs with
    torch's sync debug mode set to error, so that such a network fails with a one-line reason before the capture.
    On a CPU the same static-buffer wrapper replays the eager forward: a stand-in that runs this code path, not a
    measurement of graphs.
    """

    def __init__(self, model: OSTrack, inputs: Sequence[torch.Tensor | None], device: torch.device,
                 precision: str, warmup: int = 3) -> None:
        self.static_inputs = [None if t is None else t.clone() for t in inputs]

        def forward() -> Any:
            with torch.no_grad(), autocast(device, precision, cache_enabled=False):
                return model(*self.static_inputs)

        self.captured = device.type == "cuda"
        if not self.captured:
            self.replay: Callable[[], Any] = forward
            self.outputs = forward()
            return
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(max(warmup, 1)):  # lazy initialisations (cuBLAS handles, workspaces) happen here
                forward()
            try:
                with sync_debug_mode("error"):
                    forward()
            except RuntimeError as err:
                if "synchroniz" not in str(err):
                    raise
                raise RuntimeError(f"not capturable: the forward synchronises with the host at {project_frame(err)} "
                                   "(a data-dependent shape)") from err
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = forward()
        self.replay = self.graph.replay

    def __call__(self, *inputs: torch.Tensor | None) -> Any:
        for static, new in zip(self.static_inputs, inputs, strict=True):
            if static is not None:
                static.copy_(new)
        self.replay()
        return self.outputs


@contextmanager
def sync_debug_mode(mode: str) -> Iterator[None]:
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode(mode)
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode(previous)


class AutocastActor:
    """The library's actor under an autocast of the benchmark's choosing: the trainer's own AMP is fp16 with a
    GradScaler; bf16 needs no loss scaling, so its step runs the trainer with AMP off and this autocast inside."""

    def __init__(self, actor: Any, device: torch.device, precision: str) -> None:
        self.actor = actor
        self.net = actor.net
        self.device = device
        self.precision = precision

    def __call__(self, batch: Any, epoch: int) -> Any:
        with autocast(self.device, self.precision):
            return self.actor(batch, epoch)


# ------------------------------------------------------------------------------------------------ the run
class _Run:
    """One benchmark run: the deadline, the rows and skips so far, and the networks built for more than one
    section."""

    def __init__(self, settings: ResolvedSettings) -> None:
        self.settings = settings
        self.device = settings.device
        self.sync = settings.device.type == "cuda"
        self.start = time.perf_counter()
        self.rows: list[Row] = []
        self.skipped: list[Skip] = []
        self.references: dict[tuple[str, str], Row] = {}
        self.models: dict[str, OSTrack] = {}

    # --- book-keeping
    def remaining_s(self) -> float:
        return self.settings.budget_s - (time.perf_counter() - self.start)

    def skip(self, section: str, model: str, setting: str, reason: str) -> None:
        self.skipped.append(Skip(section, model, setting, reason))

    def attempt(self, section: str, model: str, setting: str, fn: Callable[[], Any], needed: float) -> Any | None:
        """``fn()``, or None with a skip line when less than ``needed`` seconds of the budget are left or ``fn``
        fails."""
        left = self.remaining_s()
        if left < needed:
            self.skip(section, model, setting, f"time budget: {max(left, 0):.0f} s of {self.settings.budget_s:.0f} s "
                                               f"left, this step needs about {needed:.0f} s (raise --budget_s)")
            return None
        try:
            return fn()
        except Exception as err:  # one failing step must not cost the other measurements
            self.skip(section, model, setting, f"failed: {one_line(err)}")
            self.release_memory()
            return None

    def add_row(self, row: Row, reference: tuple[str, str], is_reference: bool = False) -> Row:
        """Record ``row``; its ratio is to the first reference row recorded under ``reference``."""
        if is_reference and reference not in self.references:
            self.references[reference] = row
        base = self.references.get(reference)
        if base is not None and base.fps and row.fps:
            row.ratio = row.fps / base.fps
            row.reference = f"{base.section} {base.setting} batch {base.batch}"
        self.rows.append(row)
        return row

    def release_memory(self) -> None:
        if not self.sync:
            return
        try:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
        except RuntimeError:  # a sticky CUDA error from a failed step: the next steps fail and say so themselves
            pass

    def unavailable(self, precision: str) -> str | None:
        """Why autocast in ``precision`` is not measured on this device (None: it is)."""
        if precision == "fp16" and self.device.type == "cpu":
            return "skipped on CPU (fp16 autocast is measured on CUDA only)"
        if precision == "bf16" and self.device.type == "cuda" and not cuda_bf16_supported():
            return f"skipped: {torch.cuda.get_device_name()} has no native bf16"
        return None

    def precisions(self, section: str, wanted: Sequence[str] = tuple(PRECISIONS)) -> list[str]:
        """The precisions of ``wanted`` this device measures; a skip line for each other one."""
        chosen = []
        for precision in wanted:
            reason = self.unavailable(precision)
            if reason is None:
                chosen.append(precision)
            else:
                self.skip(section, "all", PRECISION_LABELS[precision], reason)
        return chosen

    def measure(self, fn: Callable[[], Any], warmup: int, iterations: int) -> Timing:
        """Per-call times after ``warmup`` calls; fewer calls than ``iterations`` where a row would outlast its cap."""
        for _ in range(warmup):
            fn()
        probe = time_callable(fn, 0, 1, synchronize=self.sync).median_ms
        cap = min(self.settings.row_cap_s, max(self.remaining_s(), 0.0)) * 1000
        count = min(iterations, max(MIN_ITERATIONS, int(cap / max(probe, 1e-3))))
        return time_callable(fn, 0, count, synchronize=self.sync)

    def model(self, name: str) -> OSTrack:
        """The network ``name`` in eval mode on the device, random weights seeded 0; the CUDA-graph and compile
        networks are kept for those sections."""
        if name in self.models:
            return self.models[name]
        torch.manual_seed(0)
        model = build_model(model_config(SPECS[name], self.settings.smoke)).to(self.device).eval()
        if name in GRAPH_MODELS and {"cuda_graph", "compile"} & set(self.settings.sections):
            self.models[name] = model
        return model

    # --- sections
    def forward_section(self) -> None:
        precisions = self.precisions("forward")
        for spec in MODELS:
            model = self.attempt("forward", spec.name, "build", partial(self.model, spec.name),
                                 self.settings.estimates_s["forward"])
            if model is None:
                continue
            inputs = example_inputs(model, 1, self.device)
            for precision in precisions:
                self.attempt("forward", spec.name, f"eager {PRECISION_LABELS[precision]}",
                             partial(self.time_forward, "forward", spec.name, model, inputs, precision, 1),
                             self.settings.row_cap_s)
            del model, inputs
            self.release_memory()

    def time_forward(self, section: str, name: str, model: OSTrack, inputs: Sequence[torch.Tensor | None],
                     precision: str, batch: int) -> Row:
        timing = self.measure(eager_forward(model, inputs, self.device, precision), self.settings.warmup,
                              self.settings.iterations)
        row = Row(section, name, f"eager {PRECISION_LABELS[precision]}", batch, timing.median_ms,
                  batch * timing.fps, note=f"{timing.iterations} calls")
        return self.add_row(row, (name, "network"), is_reference=precision == "fp32" and batch == 1)

    def batched_section(self) -> None:
        name = BATCHED_MODEL
        precisions = self.precisions("batched")
        model = self.attempt("batched", name, "build", partial(self.model, name), self.settings.estimates_s["batched"])
        if model is None:
            return
        for precision in precisions:
            for batch in self.settings.batch_sizes:
                row = self.attempt("batched", name, f"eager {PRECISION_LABELS[precision]} batch {batch}",
                                   partial(self.time_batch, name, model, precision, batch), self.settings.row_cap_s)
                if row is None:
                    break  # a larger batch will not fit either (memory or budget)
        del model
        self.release_memory()

    def time_batch(self, name: str, model: OSTrack, precision: str, batch: int) -> Row:
        return self.time_forward("batched", name, model, example_inputs(model, batch, self.device), precision, batch)

    def train_section(self) -> None:
        name = TRAIN_MODEL
        precisions = self.precisions("train")
        parts = self.attempt("train", name, "build student + teacher", partial(self.build_training, name),
                             self.settings.estimates_s["train"])
        if parts is None:
            return
        for precision in precisions:
            self.attempt("train", name, f"train {PRECISION_LABELS[precision]}",
                         partial(self.time_training_step, name, parts, precision), self.settings.row_cap_s)
        del parts
        self.release_memory()

    def build_training(self, name: str) -> dict[str, Any]:
        from lib.train.loretrack import build_teacher
        from lib.train.run_training import build_distiller, crop_network

        cfg = model_config(SPECS[name], self.settings.smoke)
        torch.manual_seed(0)
        teacher = build_teacher(cfg, load_checkpoint=False).to(self.device)
        student = build_model(cfg, training=True).to(self.device)
        batch_size = self.settings.train_batch or cfg.TRAIN.BATCH_SIZE
        cropper = crop_network(student, build_distiller(cfg, student, self.device, 1, teacher=teacher))
        template, search, _ = cropper.example_inputs(batch_size, device=self.device,
                                                     generator=torch.Generator().manual_seed(0))
        batch = {"template_images": template, "search_images": search,
                 "template_anno": torch.tensor([[0.25, 0.25, 0.5, 0.5]], device=self.device).repeat(batch_size, 1),
                 "search_anno": torch.tensor([[0.4, 0.4, 0.2, 0.2]], device=self.device).repeat(batch_size, 1)}
        return {"teacher": teacher, "student": student, "batch": batch, "batch_size": batch_size}

    def time_training_step(self, name: str, parts: dict[str, Any], precision: str) -> Row:
        from lib.train.actor import TrackingActor
        from lib.train.run_training import build_distiller, build_optimizer
        from lib.train.trainer import Trainer

        cfg = model_config(SPECS[name], self.settings.smoke,
                           overrides={"DISTILL.TEACHER.DTYPE": TEACHER_DTYPES[precision]})
        student = parts["student"]
        distiller = build_distiller(cfg, student, self.device, 1, teacher=parts["teacher"])
        projections = distiller.projections
        actor = TrackingActor(student, cfg, distiller=distiller)
        optimizer, _ = build_optimizer(cfg, student, projections)
        trainer = Trainer(AutocastActor(actor, self.device, precision) if precision == "bf16" else actor, optimizer,
                          [], cfg.TRAIN.EPOCH, self.device, cfg.TRAIN.GRAD_CLIP_NORM, amp=precision == "fp16",
                          trainable=student, extra_modules={"projections": projections} if projections else None)
        trainer.current_epoch = 1
        student.train()
        batch = parts["batch"]
        teacher_before: list[float] = []
        status: dict[str, float] = {}

        def step() -> None:
            teacher_before.append(distiller.teacher_seconds)
            status.update(trainer.run_step(batch))

        timing = self.measure(step, self.settings.train_warmup, self.settings.train_steps)
        teacher_share = (distiller.teacher_seconds - teacher_before[-timing.iterations]) / (sum(timing.samples) / 1000)
        losses = {key: status[key] for key in TRAIN_LOSSES if key in status}
        scaling = ", GradScaler" if precision == "fp16" else ""
        row = Row("train", name, f"train {PRECISION_LABELS[precision]}{scaling}", parts["batch_size"],
                  timing.median_ms, parts["batch_size"] * timing.fps,
                  note=f"{timing.iterations} steps; teacher {TEACHER_DTYPES[precision]}, {100 * teacher_share:.0f} % "
                       "of the step; " + ", ".join(f"{key[5:]} {value:.3g}" for key, value in losses.items()),
                  details={**losses, "teacher_share": teacher_share})
        return self.add_row(row, (name, "train"), is_reference=precision == "fp32")

    def distributed_section(self) -> None:
        backend = "nccl" if self.sync else "gloo"
        self.attempt("distributed", "-", f"init_process_group({backend})", partial(self.time_process_group, backend),
                     self.settings.estimates_s["distributed"])

    def time_process_group(self, backend: str) -> None:
        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("this torch build has no torch.distributed")
        if dist.is_initialized():
            raise RuntimeError("already inside a process group (e.g. under torchrun): run it as a single process")
        if self.sync:
            torch.cuda.set_device(self.device.index or 0)
        start = time.perf_counter()
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        init_ms = (time.perf_counter() - start) * 1000
        try:
            tensor = torch.ones(ALL_REDUCE_ELEMENTS, device=self.device)
            first = time_callable(lambda: dist.all_reduce(tensor), 0, 1, synchronize=self.sync)
            warm = self.measure(lambda: dist.all_reduce(tensor), 1, self.settings.iterations)
        finally:
            dist.destroy_process_group()
        note = "world of 1, in-process store"
        self.rows.append(Row("distributed", "-", f"init_process_group({backend})", None, init_ms, None, note=note))
        self.rows.append(Row("distributed", "-", "first all_reduce 4 MiB", None, first.median_ms, None,
                             note="includes the communicator's set-up" if backend == "nccl" else ""))
        self.rows.append(Row("distributed", "-", "all_reduce 4 MiB", None, warm.median_ms, None,
                             note=f"{warm.iterations} calls"))

    def cuda_graph_section(self) -> None:
        precisions = self.precisions("cuda_graph")
        for name in GRAPH_MODELS:
            model = self.attempt("cuda_graph", name, "build", partial(self.model, name),
                                 self.settings.estimates_s["cuda_graph"])
            if model is None:
                continue
            inputs = example_inputs(model, 1, self.device)
            for precision in precisions:
                self.attempt("cuda_graph", name, f"cuda graph {PRECISION_LABELS[precision]}",
                             partial(self.time_graph, name, model, inputs, precision), self.settings.row_cap_s)

    def time_graph(self, name: str, model: OSTrack, inputs: Sequence[torch.Tensor | None], precision: str) -> Row:
        graphed = GraphedForward(model, inputs, self.device, precision)
        timing = self.measure(lambda: graphed(*inputs), self.settings.warmup, self.settings.iterations)
        note = f"{timing.iterations} calls, new crops copied in each call"
        setting = f"cuda graph {PRECISION_LABELS[precision]}"
        if not graphed.captured:
            setting = f"static-buffer replay {PRECISION_LABELS[precision]}"
            note += "; CPU stand-in: no graph captured"
        return self.add_row(Row("cuda_graph", name, setting, 1, timing.median_ms, timing.fps, note=note),
                            (name, "network"))

    def compile_section(self) -> None:
        if self.device.type == "cpu":
            for name in GRAPH_MODELS:
                self.skip("compile", name, f"compile {self.settings.compile_mode}",
                          "skipped on CPU (torch.compile costs about a minute there; the section runs on CUDA)")
            return
        precisions = self.precisions("compile", COMPILE_PRECISIONS)
        for precision in precisions:  # fp32 of both networks first: the budget cuts the rest
            for name in GRAPH_MODELS:
                self.attempt("compile", name, f"compile {self.settings.compile_mode} {PRECISION_LABELS[precision]}",
                             partial(self.time_compiled, name, precision), self.settings.estimates_s["compile"])

    def time_compiled(self, name: str, precision: str) -> Row:
        import torch._dynamo

        model = self.model(name)
        inputs = example_inputs(model, 1, self.device)
        torch._dynamo.reset()
        breaks_before = graph_breaks()
        compiled = torch.compile(model, mode=self.settings.compile_mode, dynamic=False)
        uses_graphs = self.settings.compile_mode == "reduce-overhead"

        def forward() -> Any:
            if uses_graphs:
                torch.compiler.cudagraph_mark_step_begin()
            with torch.no_grad(), autocast(self.device, precision):
                return compiled(*inputs)

        start = time.perf_counter()
        forward()
        if self.sync:
            torch.cuda.synchronize()
        compile_s = time.perf_counter() - start
        timing = self.measure(forward, self.settings.warmup, self.settings.iterations)
        breaks = graph_breaks() - breaks_before
        torch._dynamo.reset()
        row = Row("compile", name, f"compile {self.settings.compile_mode} {PRECISION_LABELS[precision]}", 1,
                  timing.median_ms, timing.fps, note=f"{timing.iterations} calls; compiled in {compile_s:.0f} s"
                  + (f"; {breaks} graph break(s)" if breaks else ""))
        return self.add_row(row, (name, "network"))


def graph_breaks() -> int:
    try:
        from torch._dynamo.utils import counters

        return int(sum(counters["graph_break"].values()))
    except (ImportError, KeyError, AttributeError):
        return 0


def cuda_bf16_supported() -> bool:
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # older torch: no emulation argument
        return torch.cuda.is_bf16_supported()


def one_line(err: BaseException) -> str:
    """``Type: first line of the message (file:line)``: at most 300 characters of message, and the deepest frame
    of this project's code it passed through."""
    message = (str(err).strip().splitlines() or [""])[0]
    where = project_frame(err)
    return f"{type(err).__name__}: {message}"[:300] + (f" ({where})" if where else "")


def project_frame(err: BaseException) -> str:
    """``lib/models/vit.py:108``: the deepest frame of ``err``'s traceback in this project's code ('' if none)."""
    for frame in reversed(traceback.extract_tb(err.__traceback__)):
        path = Path(frame.filename).resolve()
        if path.is_relative_to(REPO_ROOT) and path.relative_to(REPO_ROOT).parts[0] in ("lib", "tracking"):
            return f"{path.relative_to(REPO_ROOT)}:{frame.lineno}"
    return ""


def describe_environment(settings: ResolvedSettings) -> dict[str, Any]:
    """Device, versions and the numerics switches that change a GPU number."""
    from lib.utils.provenance import environment

    info = environment()
    info.update(device=settings.device.type, smoke=settings.smoke, threads=torch.get_num_threads(),
                cudnn=torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    if settings.device.type == "cuda":
        props = torch.cuda.get_device_properties(settings.device)
        info.update(device_name=props.name, capability=f"{props.major}.{props.minor}",
                    memory_gib=round(props.total_memory / 2 ** 30, 1),
                    tf32_matmul=torch.backends.cuda.matmul.allow_tf32, tf32_cudnn=torch.backends.cudnn.allow_tf32,
                    cudnn_benchmark=torch.backends.cudnn.benchmark)
        try:
            info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        except (AttributeError, RuntimeError, TypeError):
            info["nccl"] = None
    else:
        from lib.test.tracker.backends.auto import cpu_model

        info["device_name"] = cpu_model() or platform.machine()
    return info


def run_gpu_benchmark(settings: GpuBenchmarkSettings) -> GpuBenchmarkResult:
    """Every section of ``settings`` in order (cheap ones first, torch.compile last, where the budget cuts)."""
    resolved = resolve_settings(settings)
    threads = torch.get_num_threads()
    if settings.threads or resolved.smoke and resolved.device.type == "cpu":
        torch.set_num_threads(settings.threads or SMOKE_THREADS)
    run = _Run(resolved)
    try:
        environment = describe_environment(resolved)
        sections = {"forward": run.forward_section, "batched": run.batched_section, "train": run.train_section,
                    "distributed": run.distributed_section, "cuda_graph": run.cuda_graph_section,
                    "compile": run.compile_section}
        for name in resolved.sections:
            sections[name]()
    finally:
        run.models.clear()
        run.release_memory()
        torch.set_num_threads(threads)  # the caller's setting back (a test process, a notebook)
    shown = asdict(resolved)
    shown["device"] = str(resolved.device)
    return GpuBenchmarkResult(environment, shown, run.rows, run.skipped, time.perf_counter() - run.start)


# ------------------------------------------------------------------------------------------------ printing
def format_gpu_benchmark(result: GpuBenchmarkResult) -> str:
    """A markdown report: the machine, one table of every row, then every skipped step with its reason."""
    env = result.environment
    lines = [f"# GPU benchmark: {env.get('device_name')} ({env['device']}), torch {env['torch']}, "
             f"CUDA {env.get('cuda') or '-'}, cuDNN {env.get('cudnn') or '-'}", ""]
    if env.get("smoke"):
        lines += ["Smoke run: 2-block, 32-wide versions of the configs on small crops, random weights; the numbers "
                  "check the code paths, they do not measure the networks.", ""]
    settings = result.settings
    lines += [f"Budget {settings['budget_s']:.0f} s, used {result.elapsed_s:.1f} s; warm-up {settings['warmup']}, "
              f"up to {settings['iterations']} timed calls per row (median); "
              f"x ref = frames/s over the reference row's (the model's eager fp32 batch-1 forward; for training, "
              f"its fp32 step).", "",
              "| section | model | setting | batch | ms | frames/s | x ref | note |",
              "|---|---|---|---|---|---|---|---|"]
    for row in result.rows:
        lines.append(f"| {row.section} | {row.model} | {row.setting} | {'' if row.batch is None else row.batch} | "
                     f"{row.ms:.2f} | {_number(row.fps, '.1f')} | {_number(row.ratio, '.2f')} | {row.note} |")
    if result.skipped:
        lines += ["", "Skipped:"]
        lines += [f"- {skip.section} / {skip.model} / {skip.setting}: {skip.reason}" for skip in result.skipped]
    return "\n".join(lines)


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)
