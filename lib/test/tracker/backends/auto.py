"""``auto``: the fastest back-end that passes the accuracy gate on this machine, measured once and cached.

On first use for a (CPU model, thread count, model, library versions) the candidates are built (exports
included), each is gated against eager fp32 (:mod:`.gate`) and those that pass are timed against eager in
alternating rounds (a candidate and eager are timed back to back, so load drift on a shared machine hits both).
The fastest wins if it is at least :data:`MIN_SPEEDUP` times eager's speed, measured as the median of the
per-round ratios; otherwise eager stays. The choice, every candidate's speed-up and gate are written to
``<save_dir>/cache/backend_choice/<key>.json``; later uses read it and only build the winner. The whole
measurement is bounded by :data:`TIME_BUDGET_S` (a candidate whose build would start later is skipped).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lib.test.tracker.backends.base import BackendError
from lib.test.tracker.backends.cpu_features import int8_dot_product_supported
from lib.test.tracker.backends.gate import (
    MAP_DEVIATION_LIMIT,
    SAME_STATE_IOU_LIMIT,
    GateSequence,
    TrackerMaker,
    evaluate_gate,
    generated_sequences,
    model_tracker_maker,
    reference_run,
    report_failure,
)
from lib.test.tracker.backends.onnx_cache import sources_digest, weights_digest
from lib.utils.profiling import time_callable

log = logging.getLogger(__name__)

AUTO = "auto"
# bf16-compile is never a default candidate: its first compile alone takes ~1 minute.
FP32_CANDIDATES = ("openvino", "onnx", "bf16")
MIN_SPEEDUP = 1.1
TIME_BUDGET_S = 120.0
ROUNDS = 3
CALLS_PER_ROUND = 5
CHOICE_FORMAT = 1  # bump when the measurement changes in a way the key does not capture
NetworkCallable = Callable[..., Any]


def default_candidates() -> tuple[str, ...]:
    """The candidates in the order they are measured, likely winner first (a build that would start after the
    time budget is skipped). Where the CPU has int8 dot products (AVX-512 VNNI, AVX-VNNI, AMX) OpenVINO's static
    int8 comes first (3.7x eager on an Intel Xeon); without them OpenVINO has only its generic int8 GEMM (slower
    than its fp32 on an AMD EPYC Zen 3) and a ViT-B calibration of 1-2 minutes, so ORT's dynamic int8 comes first
    and OpenVINO's int8 last. The flags only order the measurement; the measurement decides."""
    if int8_dot_product_supported():
        return ("openvino-int8", "onnx-int8", *FP32_CANDIDATES)
    return ("onnx-int8", *FP32_CANDIDATES, "openvino-int8")


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def library_versions() -> dict[str, str | None]:
    """torch, onnxruntime and openvino versions (None for one that is not installed)."""
    versions: dict[str, str | None] = {"torch": torch.__version__}
    for module in ("onnxruntime", "openvino"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    return versions


def model_digest(model: nn.Module) -> str:
    """The network's structure, sizes, weights and source files, hashed."""
    text = json.dumps([repr(model), getattr(model, "template_size", None), getattr(model, "search_size", None),
                       weights_digest(model), sources_digest()])
    return hashlib.sha256(text.encode()).hexdigest()


def choice_key(model: nn.Module, threads: int, candidates: Sequence[str], digest: str | None = None
               ) -> dict[str, Any]:
    """What a cached choice is valid for: this CPU model, thread count, network and library versions."""
    return {"format": CHOICE_FORMAT, "cpu": cpu_model(), "threads": int(threads),
            "model": digest or model_digest(model), **library_versions(), "candidates": list(candidates),
            "min_speedup": MIN_SPEEDUP, "gate": [MAP_DEVIATION_LIMIT, SAME_STATE_IOU_LIMIT]}


@dataclass
class AutoChoice:
    """What ``auto`` resolved to and why: per candidate its gate, speed-up over eager, or why it was skipped."""

    backend: str
    speedup: float
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    measured: str = ""  # when (local time)
    cached: bool = False

    def summary(self) -> str:
        """One line: the choice, its speed-up and every other candidate's outcome."""
        others = []
        for name, entry in self.candidates.items():
            if name == self.backend:
                continue
            if "skipped" in entry:
                others.append(f"{name} skipped ({entry['skipped']})")
            elif not entry["gate"]["passed"]:
                others.append(f"{name} failed the accuracy gate")
            else:
                others.append(f"{name} {entry['speedup']:.2f}x")
        verdict = (f"'{self.backend}' ({self.speedup:.2f}x eager fp32)" if self.backend != "eager" else
                   f"'eager' (no candidate reached {MIN_SPEEDUP}x eager fp32 and passed the accuracy gate)")
        tail = f"; {', '.join(others)}" if others else ""
        source = "cached choice" if self.cached else f"measured in {self.seconds:.0f} s"
        return f"--backend auto resolved to {verdict} [{source}{tail}]"


class ChoiceCache:
    """``<root>/<digest>.json``: one measured record per key (a choice, or a named back-end's gate), written
    atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path_for(self, key: Mapping[str, Any]) -> Path:
        return self.root / f"{hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]}.json"

    def load_record(self, key: Mapping[str, Any], field_name: str) -> Any:
        """The record stored under ``field_name`` for ``key``; None when missing, unreadable or another key's."""
        try:
            data = json.loads(self.path_for(key).read_text())
            if data.get("key") != json.loads(json.dumps(key)):
                return None
            return data[field_name]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_record(self, key: Mapping[str, Any], field_name: str, record: Any) -> Path:
        from lib.utils.io import atomic_write_text

        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, field_name: record}, indent=1, default=str))
        return path

    @contextlib.contextmanager
    def measuring(self, key: Mapping[str, Any]) -> Iterator[None]:
        """Hold the key's lock file while measuring: processes of one machine wanting the same choice at once
        (torchrun ranks, parallel runners) wait for the first one instead of timing candidates against each
        other. An advisory ``flock``; where it is unavailable, each process measures for itself."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.path_for(key).with_suffix(".lock"), "a") as handle:
            try:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX)
            except (ImportError, OSError):
                pass
            yield  # closing the file releases the lock

    def load(self, key: Mapping[str, Any]) -> AutoChoice | None:
        """The cached choice for ``key`` (None: not measured yet here)."""
        record = self.load_record(key, "choice")
        try:
            return AutoChoice(**{**record, "cached": True}) if record is not None else None
        except TypeError:
            return None

    def save(self, key: Mapping[str, Any], choice: AutoChoice) -> Path:
        return self.save_record(key, "choice", asdict(choice))


def _torch_threads_of(backend: Any, threads: int) -> int:
    """Torch threads while ``backend`` runs: ONNX back-ends want one (ORT has the cores), torch ones all."""
    return getattr(backend, "torch_threads", None) or threads


def choose_backend(reference: NetworkCallable, candidates: Mapping[str, Callable[[], NetworkCallable]],
                   threads: int, example_inputs: Sequence[Any], sequences: Sequence[GateSequence],
                   make_tracker: TrackerMaker, rounds: int = ROUNDS, calls: int = CALLS_PER_ROUND,
                   budget_s: float = TIME_BUDGET_S, min_speedup: float = MIN_SPEEDUP
                   ) -> tuple[AutoChoice, NetworkCallable]:
    """Gate every candidate, time those that pass against ``reference`` (eager fp32) in alternating rounds and
    return the choice with the winner (``reference`` itself when none is ``min_speedup`` times faster).

    ``candidates`` maps names to builders; a builder raising :class:`BackendError` (e.g. bf16 on a CPU
    without native bf16) makes its candidate skipped. Failing a gate is logged as one warning line.
    """
    start = time.perf_counter()
    torch.set_num_threads(threads)
    ref_run = reference_run(reference, sequences, make_tracker)
    report: dict[str, dict[str, Any]] = {}
    passed: dict[str, NetworkCallable] = {}
    for name, build in candidates.items():
        if time.perf_counter() - start > budget_s:
            report[name] = {"skipped": f"time budget of {budget_s:.0f} s spent"}
            continue
        built = time.perf_counter()
        try:
            backend = build()
        except BackendError as err:
            report[name] = {"skipped": str(err).split(";")[0]}
            log.info("auto: %s skipped: %s", name, err)
            continue
        torch.set_num_threads(_torch_threads_of(backend, threads))
        gate = evaluate_gate(name, backend, ref_run, sequences, make_tracker)
        report[name] = {"build_s": round(time.perf_counter() - built, 2), "gate": gate.to_dict()}
        report_failure(gate)
        if gate.passed:
            passed[name] = backend

    ratios: dict[str, list[float]] = {name: [] for name in passed}
    for index in range(rounds if passed else 0):
        if index and time.perf_counter() - start > budget_s:
            break
        for name, backend in passed.items():  # eager right before each candidate: both see the same load
            torch.set_num_threads(threads)
            eager_ms = time_callable(lambda: reference(*example_inputs), 1, calls).median_ms
            torch.set_num_threads(_torch_threads_of(backend, threads))
            own_ms = time_callable(functools.partial(backend, *example_inputs), 1, calls).median_ms
            ratios[name].append(eager_ms / own_ms)
    for name, values in ratios.items():
        report[name]["speedup"] = statistics.median(values)
        report[name]["rounds"] = [round(v, 3) for v in values]
    winner = max((n for n in ratios if report[n]["speedup"] >= min_speedup), key=lambda n: report[n]["speedup"],
                 default=None)
    choice = AutoChoice(winner or "eager", report[winner]["speedup"] if winner else 1.0, report,
                        time.perf_counter() - start, time.strftime("%Y-%m-%d %H:%M:%S"))
    chosen = passed[winner] if winner else reference
    torch.set_num_threads(_torch_threads_of(chosen, threads))
    return choice, chosen


def build_auto(model: nn.Module, threads: int | None = None, choice_dir: str | Path | None = None,
               candidates: Sequence[str] | None = None, **options: Any) -> Any:
    """The back-end ``auto`` resolves to for ``model`` here: cached, or measured now and cached.

    ``candidates`` defaults to :func:`default_candidates`; ``options`` go to every candidate (each family ignores
    the other's); ``choice_dir`` defaults to
    ``<save_dir>/cache/backend_choice``. On a model that is not on the CPU, ``auto`` is eager.
    """
    from lib.test.tracker.backends.torch_backends import EagerBackend

    candidates = tuple(candidates) if candidates is not None else default_candidates()
    unknown = [name for name in candidates if name in (AUTO, "eager")]
    if unknown:
        raise BackendError(f"'auto' candidates must be concrete non-eager back-ends, got {unknown}")
    first = next(model.parameters(), None)
    if first is not None and first.device.type != "cpu":
        return EagerBackend(model)
    threads = threads or torch.get_num_threads()
    cache = ChoiceCache(choice_dir if choice_dir is not None else _default_choice_dir())
    key = choice_key(model, threads, candidates)
    with cache.measuring(key):  # ranks or runners starting together: one measures, the others read its choice
        return _build_auto(model, threads, cache, key, candidates, options)


def _build_auto(model: nn.Module, threads: int, cache: ChoiceCache, key: dict[str, Any], candidates: Sequence[str],
                options: dict[str, Any]) -> Any:
    from lib.test.tracker.backends.registry import build_backend

    choice = cache.load(key)
    if choice is not None:
        log.info(choice.summary())
        backend = build_backend(choice.backend, model, threads=threads, **options)
    else:
        log.warning("--backend auto: first use for this machine and model; measuring %s against eager fp32 "
                    "(bounded to %.0f s)", ", ".join(candidates), TIME_BUDGET_S)
        builders = {name: functools.partial(build_backend, name, model, threads=threads, **options)
                    for name in candidates}
        reference = build_backend("eager", model, threads=threads, **options)
        inputs = tuple(model.example_inputs(device="cpu", generator=torch.Generator().manual_seed(0)))
        choice, backend = choose_backend(reference, builders, threads, inputs, generated_sequences(),
                                         model_tracker_maker(model))
        cache.save(key, choice)
        log.warning(choice.summary())
    backend.auto_choice = choice
    return backend


def check_named_backend(model: nn.Module, backend: Any, choice_dir: str | Path | None = None) -> dict[str, Any] | None:
    """Gate a back-end the user named (not ``auto``, which gates its own candidates) on this machine, once per
    (CPU model, threads, model, library versions), and warn in one line when it fails: the user keeps the
    back-end they asked for, but learns that its boxes may differ from eager fp32 here. Returns the gate's record
    (None for eager, a GPU model, or a back-end ``auto`` chose)."""
    name = getattr(backend, "name", "eager")
    first = next(model.parameters(), None)
    if name == "eager" or getattr(backend, "auto_choice", None) is not None or (
            first is not None and first.device.type != "cpu"):
        return None
    threads = getattr(backend, "threads", None) or torch.get_num_threads()
    cache = ChoiceCache(choice_dir if choice_dir is not None else _default_choice_dir())
    key = {**choice_key(model, threads, [name]), "named": name}
    with cache.measuring(key):
        record = _named_backend_gate(model, backend, threads, cache, key)
    if record.get("failure"):
        log.warning("%s; its results may differ from eager fp32 here (use --backend eager or auto)", record["failure"])
    return record


def _named_backend_gate(model: nn.Module, backend: Any, threads: int, cache: ChoiceCache, key: dict[str, Any]
                        ) -> dict[str, Any]:
    """The stored gate record of ``backend`` for ``key``, measured now if there is none."""
    name = backend.name
    record = cache.load_record(key, "gate")
    if record is None:
        from lib.test.tracker.backends.registry import build_backend

        log.info("checking back-end '%s' against eager fp32 on this machine (once per machine and model)", name)
        torch_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        make_tracker, sequences = model_tracker_maker(model), generated_sequences()
        reference = reference_run(build_backend("eager", model), sequences, make_tracker)
        torch.set_num_threads(_torch_threads_of(backend, threads))
        gate = evaluate_gate(name, backend, reference, sequences, make_tracker)
        torch.set_num_threads(torch_threads)
        record = {**gate.to_dict(), "failure": gate.failure(), "measured": time.strftime("%Y-%m-%d %H:%M:%S")}
        cache.save_record(key, "gate", record)
    return record


def _default_choice_dir() -> Path:
    from lib.utils.paths import get_paths
    from lib.utils.run_layout import backend_choice_dir

    return backend_choice_dir(get_paths())
