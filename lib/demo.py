"""The main job out of the box: train and evaluate LoReTrack end to end on the embedded benchmark.

Stages (each reused when a re-run finds it finished; a killed training stage resumes from its last
checkpoint): generate the benchmark, train the high-resolution teacher, train the low-resolution student
without and with distillation (once per seed), track the test split with every model and a static-box
baseline, analyse with the regular benchmark code, write the table, plots and an annotated video.
Everything goes through the same loaders, trainer, tracker and analysis as the real benchmarks.
"""
from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lib.config import Config, load_config
from lib.models import build_model
from lib.test.evaluation.datasets import get_dataset
from lib.test.evaluation.results_store import RunIdentity, checkpoint_identity
from lib.test.evaluation.running import run_dataset
from lib.test.tracker.baselines import StaticBoxTracker
from lib.test.tracker.factory import TrackerFactory, backend_tracker_options
from lib.train import run_training
from lib.utils.io import atomic_path, atomic_write_text
from lib.utils.paths import Paths, get_paths
from lib.utils.profiling import count_macs_published
from lib.utils.run_layout import TrainingRun, results_run_name

log = logging.getLogger(__name__)
SCRIPT = "demo"
COLOURS = {"ground truth": (255, 255, 255), "teacher": (0, 200, 255), "student": (255, 80, 80),
           "student + KD": (80, 255, 80), "static box": (180, 180, 180)}


@dataclass
class DemoSettings:
    seeds: int = 1
    benchmark_seed: int = 0
    num_train: int = 40
    num_val: int = 10
    num_test: int = 30
    frames: tuple[int, int] = (40, 80)
    frame_size: tuple[int, int] = (320, 240)
    epochs: int | None = None  # None: the configs' TRAIN.EPOCH
    samples_per_epoch: int | None = None
    output: Path | None = None
    backend: str = "auto"  # the trained models track with the fastest back-end that passes the gate here
    progress: bool = True
    report: Callable[[str], None] = print


@dataclass
class DemoResult:
    table: str
    scores: dict[str, dict[str, float | None]]
    seed_summary: dict[str, dict[str, float]] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def _stage_overrides(settings: DemoSettings, benchmark: Path, seed: int) -> list[str]:
    overrides = [f"DATA.TRAIN.DATASETS_NAME=['CUSTOM:{benchmark / 'train'}']", f"TRAIN.SEED={seed}"]
    if settings.epochs:
        overrides += [f"TRAIN.EPOCH={settings.epochs}", f"TEST.EPOCH={settings.epochs}",
                      f"TRAIN.LR_DROP_EPOCH={max(1, 4 * settings.epochs // 5)}"]
    if settings.samples_per_epoch:
        overrides.append(f"DATA.TRAIN.SAMPLE_PER_EPOCH={settings.samples_per_epoch}")
    return overrides


class Demo:
    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.paths: Paths = get_paths(save_dir=settings.output) if settings.output else get_paths()
        self.root = self.paths.save_dir / "demo"
        self.say = settings.report

    # ------------------------------------------------------------------------------------------ stages
    def benchmark(self) -> Path:
        from lib.data.embedded import ensure_embedded_benchmark

        s = self.settings
        self.say(f"[1/5] embedded benchmark ({s.num_train} train / {s.num_val} val / {s.num_test} test sequences)")
        return ensure_embedded_benchmark(seed=s.benchmark_seed, num_train=s.num_train, num_val=s.num_val,
                                         num_test=s.num_test, frames=s.frames, size=s.frame_size, progress=s.progress)

    def train(self, config: str, name: str, overrides: list[str]) -> tuple[Config, Path, Path]:
        """Train (or finish, or reuse) one model; returns its config, YAML and final checkpoint.

        The run folder carries a digest of the full config, so a changed config never reuses stale weights
        (or stale tracking results, which are stored under the same name).
        """
        cfg = load_config(config, overrides=overrides, script=SCRIPT)
        run_name = f"{name}-{hashlib.sha1(cfg.to_yaml().encode()).hexdigest()[:8]}"
        final = TrainingRun(self.paths, SCRIPT, run_name).checkpoint_path(cfg.TRAIN.EPOCH)
        yaml_path = self.root / "configs" / f"{run_name}.yaml"
        atomic_write_text(yaml_path, cfg.to_yaml())
        if final.is_file():
            self.say(f"      {run_name}: reusing {final}")
            return cfg, yaml_path, final
        start = time.perf_counter()
        self.say(f"      {run_name}: training {cfg.TRAIN.EPOCH} epochs x {cfg.DATA.TRAIN.SAMPLE_PER_EPOCH} pairs")
        trainer = run_training.run(cfg, SCRIPT, run_name, resume=True, progress=self.settings.progress,
                                   paths=self.paths)
        last = trainer.hooks[0].history[-1] if trainer.hooks[0].history else {}
        model = trainer.trainable
        self.say(f"      {run_name}: done in {time.perf_counter() - start:.0f} s "
                 f"({model.template_size}/{model.search_size} px), final training loss "
                 f"{last.get('Loss/total', float('nan')):.3f}, IoU {last.get('IoU', float('nan')):.3f}")
        return cfg, yaml_path, final

    def evaluate(self, name: str, factory, sequences, identity: RunIdentity) -> Path:
        """Track into ``results/<name>[_<back-end>]``; results of an older model there are moved aside and
        tracked again."""
        results = self.root / "results" / results_run_name(name, backend=identity.backend)
        run_dataset(factory, sequences, results, threads=0, show_progress=self.settings.progress,
                    log=lambda line: None, identity=identity, dataset="embedded got10k_test", force=True)
        return results

    # -------------------------------------------------------------------------------------------- run
    def run(self) -> DemoResult:
        from lib.test.analysis.analysis import analyse
        from lib.test.analysis.plots import plot_scores
        from lib.test.analysis.report import format_table, score_rows
        from lib.test.analysis.result_files import TrackerSpec

        start = time.perf_counter()
        s = self.settings
        benchmark = self.benchmark()
        self.say("[2/5] teacher (high resolution)")
        teacher_cfg, teacher_yaml, teacher_ckpt = self.train("teacher", "teacher",
                                                             _stage_overrides(s, benchmark, seed=0))
        students: dict[str, list[tuple[Config, Path, Path]]] = {"student": [], "student + KD": []}
        for seed in range(s.seeds):
            self.say(f"[3/5] students (low resolution), seed {seed + 1} of {s.seeds}")
            base = _stage_overrides(s, benchmark, seed=seed)
            students["student"].append(self.train("student", f"student_seed{seed}", base))
            kd = base + [f"DISTILL.TEACHER.CONFIG={teacher_yaml}", f"DISTILL.TEACHER.CHECKPOINT={teacher_ckpt}"]
            students["student + KD"].append(self.train("student_kd", f"student_kd_seed{seed}", kd))

        self.say("[4/5] tracking the test split")
        sequences = get_dataset("got10k_test", root=benchmark)
        runs = {"teacher": [(teacher_cfg, teacher_yaml, teacher_ckpt)], **students}
        specs, macs = [], {}
        for name, variants in runs.items():
            folders = []
            for cfg, yaml_path, ckpt in variants:
                factory = TrackerFactory(str(yaml_path), SCRIPT, str(ckpt),
                                         tracker_options=backend_tracker_options(s.backend, self.paths))
                factory, backend = factory.resolved()
                self.say(f"      {yaml_path.stem}: back-end {backend}")
                folders.append(self.evaluate(yaml_path.stem, factory, sequences,
                                             checkpoint_identity(cfg.to_dict(), ckpt, backend)))
            specs.append(TrackerSpec(name, tuple(folders)))
            macs[name] = _published_macs(variants[0][0])
        static_identity = RunIdentity("static box", None, "none")
        specs.append(TrackerSpec("static box", (self.evaluate("static_box", StaticBoxTracker, sequences,
                                                              static_identity),)))

        self.say("[5/5] analysis")
        report = analyse(sequences, specs, report_name="embedded test")
        scores = report.scores()
        rows = score_rows(scores)
        for name, row in rows.items():
            row["GMACs"] = macs.get(name)
        rows["static box"]["FPS"] = None  # it does no work per frame
        columns = ("AUC", "Precision", "Norm Precision", "FPS", "GMACs")
        table = format_table("embedded test", rows, columns)
        outputs = {"plots": self.root / "plots"}
        plot_scores(scores, outputs["plots"], "embedded test", kinds=("success",))
        seed_summary = self._per_seed(sequences, specs)
        result = DemoResult(table, rows, seed_summary, outputs)
        outputs["video"] = self._video(sequences[0], specs)
        outputs["json"] = self.root / "demo_results.json"
        result.seconds = time.perf_counter() - start
        atomic_write_text(outputs["json"], json.dumps({"table": rows, "seeds": seed_summary,
                                                       "seconds": result.seconds}, indent=2, default=str))
        return result

    def _per_seed(self, sequences, specs) -> dict[str, dict[str, float]]:
        """AUC of every seed separately, with mean and standard deviation (students only)."""
        from lib.test.analysis.analysis import analyse
        from lib.test.analysis.result_files import TrackerSpec

        summary = {}
        for spec in specs:
            if len(spec.run_dirs) < 2:
                continue
            per_run = [TrackerSpec(f"{spec.display_name} #{i}", (folder,)) for i, folder in enumerate(spec.run_dirs)]
            aucs = [s.auc for s in analyse(sequences, per_run).scores().values()]
            summary[spec.display_name] = {"mean_auc": statistics.fmean(aucs), "std_auc": statistics.stdev(aucs),
                                          "aucs": aucs}
        return summary

    def _video(self, seq, specs) -> Path:
        """The first test sequence with the ground truth and every tracker's boxes."""
        from lib.test.analysis.result_files import ResultFolder, load_result_boxes
        from lib.utils.image import read_rgb
        from lib.utils.video import BoxVideoWriter

        boxes = {"ground truth": seq.ground_truth_rect}
        for spec in specs:
            path = ResultFolder(spec.run_dirs[0]).box_file(seq)
            if path is not None:
                boxes[spec.display_name] = load_result_boxes(path)
        target = self.root / f"{seq.name}_tracked.mp4"
        first = read_rgb(seq.frames[0])
        with atomic_path(target, suffix=".tmp.mp4") as tmp:
            writer = BoxVideoWriter(tmp, first.shape[1], first.shape[0], fps=15)
            for index, frame in enumerate(seq.frames):
                drawn = [(name, b[index], COLOURS.get(name, (255, 255, 0))) for name, b in boxes.items()
                         if index < len(b)]
                writer.write(read_rgb(frame), drawn, f"{seq.name} frame {index + 1}")
            writer.close()
        return target


def _published_macs(cfg: Config) -> float:
    model = build_model(cfg).eval()
    return count_macs_published(model, *model.example_inputs()) / 1e9
