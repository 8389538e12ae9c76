"""Bad input to the command-line scripts: one line on stderr, exit code 2, traceback only with --debug."""
from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from lib.models import build_model, save_checkpoint
from lib.utils.paths import REPO_ROOT
from tests.model_configs import student_config

VIDEO_DEMO = REPO_ROOT / "tracking" / "video_demo.py"


def _run(*args, timeout=120):
    return subprocess.run([sys.executable, str(VIDEO_DEMO), *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def _assert_one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    cfg = student_config()
    (folder / "tiny.yaml").write_text(cfg.to_yaml())
    torch.manual_seed(1)
    checkpoint = save_checkpoint(folder / "tiny.pth.tar", build_model(cfg))
    video = folder / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for t in range(6):
        frame = np.full((120, 160, 3), 40, np.uint8)
        frame[40:70, 20 + 10 * t:50 + 10 * t] = (0, 200, 255)
        writer.write(frame)
    writer.release()
    return folder / "tiny.yaml", checkpoint, video


@pytest.mark.e2e
def test_unknown_key(tmp_path, files):
    _, checkpoint, video = files
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  HEAD:\n    NUM_CHANELS: 32\n")
    _assert_one_line_error(_run(bad, checkpoint, video, "--init_bbox", "20,40,30,30"),
                           "unknown key 'MODEL.HEAD.NUM_CHANELS'", "bad.yaml")


@pytest.mark.e2e
def test_malformed_yaml(tmp_path, files):
    _, checkpoint, video = files
    bad = tmp_path / "broken.yaml"
    bad.write_text("MODEL: {HEAD: [\n")
    _assert_one_line_error(_run(bad, checkpoint, video, "--init_bbox", "20,40,30,30"), "malformed YAML",
                           "broken.yaml")


@pytest.mark.e2e
def test_missing_weight_file(files, tmp_path):
    config, _, video = files
    _assert_one_line_error(_run(config, tmp_path / "none.pth.tar", video, "--init_bbox", "20,40,30,30"),
                           "weight file not found")


@pytest.mark.e2e
def test_checkpoint_of_another_architecture(files, tmp_path):
    config, _, video = files
    cfg = student_config()
    cfg.MODEL.BACKBONE.EMBED_DIM = 96
    cfg.MODEL.BACKBONE.NUM_HEADS = 6
    path = save_checkpoint(tmp_path / "other.pth.tar", build_model(cfg))
    _assert_one_line_error(_run(config, path, video, "--init_bbox", "20,40,30,30"), "does not fit this model")
    debug = _run(config, path, video, "--init_bbox", "20,40,30,30", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


@pytest.mark.e2e
def test_bad_video_and_box(files, tmp_path):
    config, checkpoint, video = files
    _assert_one_line_error(_run(config, checkpoint, tmp_path / "none.mp4", "--init_bbox", "1,1,5,5"),
                           "video not found")
    _assert_one_line_error(_run(config, checkpoint, video), "--init_bbox")
    _assert_one_line_error(_run(config, checkpoint, video, "--init_bbox", "20,40,0,30", "--backend", "eager"),
                           "zero or negative size")  # eager: the default 'auto' logs its first-use measurement


@pytest.mark.e2e
def test_video_demo_writes_annotated_video_and_boxes(files, tmp_path):
    config, checkpoint, video = files
    result = _run(config, checkpoint, video, "--init_bbox", "20,40,30,30", "--output", tmp_path)
    assert result.returncode == 0, result.stderr
    boxes = np.loadtxt(tmp_path / "clip_boxes.txt", delimiter=",")
    assert boxes.shape == (6, 4) and np.allclose(boxes[0], [20, 40, 30, 30])
    capture = cv2.VideoCapture(str(tmp_path / "clip_tracked.mp4"))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames == 6


# ------------------------------------------------------------------ bad values, unwritable outputs (issue 15)

TRACKING = REPO_ROOT / "tracking"


def _cli(name: str):
    """A tracking/ script as a module, so its main() runs in this process."""
    import importlib.util

    if str(TRACKING) not in sys.path:
        sys.path.insert(0, str(TRACKING))
    spec = importlib.util.spec_from_file_location(f"cli_{name}", TRACKING / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sequence_folder(root, name, ground_truth, frames=6):
    folder = root / name / "img"
    folder.mkdir(parents=True)
    for t in range(frames):
        frame = np.full((120, 160, 3), 40, np.uint8)
        frame[40:70, 20 + 5 * t:50 + 5 * t] = (0, 200, 255)
        cv2.imwrite(str(folder / f"{t:04d}.jpg"), frame)
    (root / name / "groundtruth.txt").write_text(ground_truth)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """A folder benchmark: a good sequence, an unparsable ground truth, a huge box, 0,0,1e9,1e9."""
    root = tmp_path_factory.mktemp("bench")
    _sequence_folder(root, "good", "20,40,30,30\n")
    _sequence_folder(root, "badgt", "abc,def\n", frames=1)
    _sequence_folder(root, "huge", "0,0,20000,20000\n", frames=1)
    _sequence_folder(root, "giant", "0,0,1e9,1e9\n", frames=1)
    return root


@pytest.fixture
def blocker(tmp_path):
    """A regular file: anything 'under' it cannot be written, even by root."""
    path = tmp_path / "a_file"
    path.write_text("not a folder")
    return path


def _bad_value_table(files, bench, blocker, tmp_path):
    config, checkpoint, video = files
    test = ["ostrack", config, "--checkpoint", checkpoint, "--dataset", "folder", "--dataset_root", bench,
            "--no_progress", "--save_dir", tmp_path / "out"]
    train = ["--config", config, "--save_dir", tmp_path / "train", "--no_progress"]
    profile = ["--config", config, "--threads", "1", "--warmup", "0", "--iterations", "1"]
    demo = [config, checkpoint, video, "--backend", "eager"]
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    (results / "seq1.txt").write_text("1,2,3,4\n")
    empty = tmp_path / "empty_src"
    empty.mkdir(exist_ok=True)
    return [
        ("train", [*train, "--opts", "TRAIN.EPOCH=0"], "key 'TRAIN.EPOCH' must be at least 1"),
        ("train", [*train, "--opts", "TRAIN.BATCH_SIZE=0"], "key 'TRAIN.BATCH_SIZE' must be at least 1"),
        ("train", [*train, "--opts", "TRAIN.LR=-0.5"], "key 'TRAIN.LR' must be above 0"),
        ("train", [*train, "--opts", "TRAIN.LR=.nan"], "key 'TRAIN.LR' must be a finite number"),
        ("train", [*train, "--opts", "TRAIN.NUM_WORKER=-1"], "key 'TRAIN.NUM_WORKER' must be at least 0"),
        ("train", [*train, "--opts", "DATA.TRAIN.DATASETS_NAME=[GOT10K_vottrain]", "DATA.TRAIN.DATASETS_RATIO=[0]"],
         "DATASETS_RATIO [0] must have a positive sum"),
        ("train", [*train, "--opts", "TEST.CROP_MEMORY_MB=0"], "key 'TEST.CROP_MEMORY_MB' must be at least 1"),
        ("train", [*train, "--script", "ostrak"], "unknown script 'ostrak'; known: ['demo', 'loretrack', 'ostrack']"),
        ("train", ["--config", config, "--save_dir", blocker / "runs"], f"cannot write checkpoints in {blocker}/runs"),
        ("profile_model", [*profile[:-1], "0"], "--iterations must be at least 1"),
        ("profile_model", [*profile, "--frame_size", "0x0"], "--frame_size 0x0: width and height must be 1..8192"),
        ("profile_model", [*profile, "--threads", "0"], "--threads must be at least 1"),
        ("profile_model", [*profile, "--warmup", "-1"], "--warmup must be at least 0"),
        ("profile_model", [*profile, "--iterations", "x"], "argument --iterations: invalid int value: 'x'"),
        ("profile_model", [*profile, "--json", blocker / "r.json"], f"cannot write the --json report in {blocker}"),
        ("test", [*test, "--threads", "-1"], "--threads and --num_gpus must be >= 0"),
        ("test", [*test, "--runid", "-1"], "--runid must be >= 0"),
        ("test", [*test, "--claim_lease", "0"], "--claim_lease must be a positive number of minutes"),
        ("test", ["ostrak", *test[1:]], "unknown script 'ostrak'"),
        ("test", [*test, "--save_dir", blocker / "out"], f"cannot write tracking results in {blocker}/out/test/"),
        ("test", [*test, "--sequence", "badgt"], "badgt/groundtruth.txt: not a table of numbers"),
        ("video_demo", [*demo, "--init_bbox", "20,40,30,30", "--output", blocker / "v"],
         f"cannot write --output in {blocker}/v: {blocker} is a file"),
        ("video_demo", [*demo, "--init_bbox", "0,0,1e9,1e9", "--output", tmp_path / "v"],
         "initial box [0.0, 0.0, 1000000000.0, 1000000000.0] is too large to track"),
        ("video_demo", [*demo, "--init_bbox", "20,40,30,30", "--script", "ostrak"], "unknown script 'ostrak'"),
        ("pack_got10k", ["--result_dir", results, "--output", blocker / "sub.zip"],
         f"cannot write the submission zip in {blocker}"),
        ("pack_trackingnet", ["--result_dir", results, "--output", blocker / "sub.zip"],
         f"cannot write the submission zip in {blocker}"),
        ("pack_lmdb", ["--src", empty, "--dst", tmp_path / "packed"], "holds no files: nothing to pack"),
        ("pack_lmdb", ["--src", results, "--dst", blocker / "packed"], f"cannot write --dst in {blocker}"),
        ("analysis_results", ["--dataset", "otb", "--json", blocker / "r.json"], "cannot write the --json report"),
        ("create_default_local_file", ["--output", blocker / "s.yaml"], "cannot write the settings file"),
    ]


def test_bad_values_and_unwritable_outputs_are_one_line_before_any_work(files, bench, blocker, tmp_path, capsys,
                                                                        monkeypatch):
    """Every case through the script's own main(): exit code 2, one line naming the problem, nothing created."""
    import logging

    from lib.utils.cli import run_main

    monkeypatch.setattr(logging, "basicConfig", lambda **kwargs: None)  # train.py would configure this process
    failures = []
    for script, argv, fragment in _bad_value_table(files, bench, blocker, tmp_path):
        code = run_main(_cli(script).main, [str(arg) for arg in argv])
        captured = capsys.readouterr()
        lines = captured.err.strip().splitlines()
        if code != 2 or len(lines) != 1 or fragment not in lines[0]:
            failures.append(f"{script} {argv[-2:]}: exit {code}, stderr {captured.err[-300:]!r}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "train").exists() and not (tmp_path / "packed").exists()


def test_typed_local_settings(tmp_path, monkeypatch, capsys):
    from lib.utils.cli import run_main

    settings = tmp_path / "local_settings.yaml"
    monkeypatch.setenv("LORETRACK_SETTINGS", str(settings))
    cases = [("datasets: 5\n", "'datasets' must be a mapping of dataset name to folder"),
             ("save_dir: 7\n", "'save_dir' must be a folder path (a string), got 7"),
             ("datasets: {lasot: [1]}\n", "'datasets' entries must be folder paths (strings)")]
    for text, fragment in cases:
        settings.write_text(text)
        code = run_main(_cli("test").main, ["ostrack", "vitb_256_mae_ce_32x4_ep300", "--dataset", "lasot"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and fragment in err[0] and str(settings) in err[0], err


def test_a_bad_ground_truth_stops_only_its_own_sequence(files, bench, tmp_path, capsys):
    from lib.utils.cli import run_main

    config, checkpoint, _ = files
    code = run_main(_cli("test").main, ["ostrack", str(config), "--checkpoint", str(checkpoint), "--dataset",
                                        "folder", "--dataset_root", str(bench), "--sequence", "good",
                                        "--no_progress", "--save_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "1 done" in out, out


def _memory_limited() -> None:
    """8 GB of address space: plenty for torch and a tracker, far below what a 20000 px box's crop would take."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


@pytest.mark.e2e
def test_huge_boxes_and_bad_ground_truth_fail_per_sequence_under_a_memory_limit(files, bench, tmp_path):
    config, checkpoint, _ = files
    result = subprocess.run([sys.executable, str(TRACKING / "test.py"), "ostrack", str(config), "--checkpoint",
                             str(checkpoint), "--dataset", "folder", "--dataset_root", str(bench), "--no_progress",
                             "--save_dir", str(tmp_path)], capture_output=True, text=True, timeout=300,
                            preexec_fn=_memory_limited)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    failed = {line.split(":")[0].strip(): line for line in result.stdout.splitlines() if ": FAILED: " in line}
    assert "good" not in failed and "1 done" in result.stdout, result.stdout
    assert "initial box [0.0, 0.0, 20000.0, 20000.0] is too large to track" in failed["huge"]
    assert "TEST.CROP_MEMORY_MB=512" in failed["huge"]
    assert "initial box [0.0, 0.0, 1000000000.0, 1000000000.0] is too large" in failed["giant"]
    assert "badgt/groundtruth.txt: not a table of numbers" in failed["badgt"]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("script, argv, fragment", [
    ("train.py", ["--config", "{config}", "--opts", "TRAIN.EPOCH=0"], "key 'TRAIN.EPOCH' must be at least 1"),
    ("profile_model.py", ["--config", "{config}", "--iterations", "0"], "--iterations must be at least 1"),
    ("pack_got10k.py", ["--result_dir", "{tmp}", "--output", "{tmp}/file/sub.zip"], "is a file, not a folder"),
    ("pack_trackingnet.py", ["--result_dir", "{tmp}", "--output", "{tmp}/file/sub.zip"], "is a file, not a folder"),
    ("pack_lmdb.py", ["--src", "{tmp}/empty", "--dst", "{tmp}/packed"], "holds no files: nothing to pack"),
    ("test.py", ["ostrak", "{config}", "--dataset", "otb"], "unknown script 'ostrak'"),
    ("video_demo.py", ["{config}", "{checkpoint}", "{video}", "--init_bbox", "1,1,5,5", "--script", "ostrak"],
     "unknown script 'ostrak'"),
    ("analysis_results.py", ["--dataset", "otb", "--json", "{tmp}/file/r.json"], "is a file, not a folder"),
    ("create_default_local_file.py", ["--output", "{tmp}/file/s.yaml"], "is a file, not a folder"),
])
def test_exit_code_2_from_a_real_process(files, tmp_path, script, argv, fragment):
    config = files[0]
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    argv = [arg.format(config=config, checkpoint=files[1], video=files[2], tmp=tmp_path) for arg in argv]
    result = subprocess.run([sys.executable, str(TRACKING / script), *argv], capture_output=True, text=True,
                            timeout=120)
    _assert_one_line_error(result, fragment)
