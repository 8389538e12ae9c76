"""Playback of one sequence with several trackers: the MP4, its legend and IoU strip, the hardest-frames sheet."""
from __future__ import annotations

import importlib
import json

import cv2
import numpy as np
import pytest

from lib.test.analysis.playback import (
    GROUND_TRUTH_COLOUR,
    GROUND_TRUTH_NAME,
    TILE_COLUMNS,
    TILE_WIDTH,
    hardest_frames,
    render_playback,
    trackers_in_root,
)
from lib.test.evaluation.datasets import get_dataset
from lib.utils.boxes import pytracking_box_iou
from lib.utils.cli import run_main
from lib.utils.paths import REPO_ROOT

SEQUENCE = "Football1"  # 74 annotated frames of 81 images: the video must follow the annotation, not the folder


# ------------------------------------------------------------------------------------------ frame selection

def brute_force_hardest(mean_iou: np.ndarray, count: int) -> list[int]:
    scored = [i for i, value in enumerate(mean_iou) if np.isfinite(value)]
    return sorted(scored, key=lambda i: (mean_iou[i], i))[:count]


def test_hardest_frames_are_the_lowest_mean_iou_frames():
    rng = np.random.default_rng(3)
    mean_iou = rng.random(200).round(2)  # many ties: the earlier frame goes first
    mean_iou[[5, 17, 90]] = np.nan  # frames without a ground-truth box are never chosen
    chosen = hardest_frames(mean_iou, 12)
    assert chosen.tolist() == brute_force_hardest(mean_iou, 12)
    assert len(chosen) == 12 and not set(chosen.tolist()) & {5, 17, 90}
    assert (np.diff(mean_iou[chosen]) >= 0).all()


def test_hardest_frames_of_short_or_unscored_sequences():
    assert hardest_frames(np.array([0.5, 0.1, np.nan, 0.3]), 12).tolist() == [1, 3, 0]
    assert hardest_frames(np.array([np.nan, np.nan]), 12).tolist() == []
    assert hardest_frames(np.array([0.2, 0.2, 0.1]), 2).tolist() == [2, 0]


# ----------------------------------------------------------------------------------- real OTB frames

@pytest.fixture(scope="module")
def football(shared_data):
    return get_dataset("otb", root=shared_data / "otb_mini_sequences", sequences=[SEQUENCE])[0]


@pytest.fixture(scope="module")
def result_root(shared_data, football, tmp_path_factory):
    """ATOM's published OTB-100 file as it comes, plus two generated trackers in other styles."""
    root = tmp_path_factory.mktemp("playback_results")
    atom_text = (shared_data / "otb100_results_ATOM" / "football1.txt").read_text()
    (root / "ATOM").mkdir()
    (root / "ATOM" / "football1.txt").write_text(atom_text)
    atom = np.loadtxt(shared_data / "otb100_results_ATOM" / "football1.txt", delimiter=",")
    drifting = atom.copy()
    drifting[:, 0] += np.linspace(0.0, 30.0, len(atom))
    (root / "Drifting").mkdir()
    np.savetxt(root / "Drifting" / "Football1.txt", drifting, fmt="%.2f", delimiter="\t")
    rng = np.random.default_rng(0)
    jitter = football.ground_truth_rect + rng.normal(0.0, 4.0, football.ground_truth_rect.shape)
    jitter[:, 2:] = np.maximum(jitter[:, 2:], 5.0)
    (root / "Jitter").mkdir()
    np.savetxt(root / "Jitter" / "Football1.txt", jitter, fmt="%.3f", delimiter=" ")
    return root


def read_video(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames


def expected_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """The analysis's per-frame rule on these files (full length, finite, non-empty): frame 0 is the ground truth."""
    boxes = boxes.copy()
    boxes[0] = gt[0]
    return pytracking_box_iou(boxes, gt)


@pytest.fixture(scope="module")
def playback(football, result_root, tmp_path_factory):
    output = tmp_path_factory.mktemp("playback_out")
    return render_playback(football, trackers_in_root(result_root), output, dataset="otb", fps=15)


def test_video_has_one_frame_per_annotated_frame(playback, football, shared_data):
    assert len(football) == 74 < len(list((shared_data / "otb_mini_sequences" / SEQUENCE / "img").glob("*.jpg")))
    frames = read_video(playback.video)
    assert playback.num_frames == len(frames) == len(football)
    assert frames[0].shape == (playback.layout.height, playback.layout.width, 3)
    assert not list(playback.video.parent.glob(".*tmp*")), "temporary files left behind"


def test_every_legend_colour_is_in_the_frames(playback):
    layout = playback.layout
    names = [entry.label.split(" (AO")[0] for entry in layout.legend]
    assert names == [GROUND_TRUTH_NAME, "ATOM", "Drifting", "Jitter"]  # --result_root: sorted sub-folder names
    colours = [entry.colour for entry in layout.legend]
    assert colours[0] == GROUND_TRUTH_COLOUR and len(set(colours)) == len(colours)
    assert colours[1:] == [track.colour for track in playback.tracks]
    frames = read_video(playback.video)
    for frame in (frames[0], frames[len(frames) // 2], frames[-1]):
        for entry in layout.legend:
            x0, y0, x1, y1 = entry.swatch
            swatch = frame[y0 + 2:y1 - 1, x0 + 2:x1 - 1].reshape(-1, 3).astype(float)
            assert np.abs(swatch.mean(axis=0) - entry.colour).max() < 40, (entry.label, swatch.mean(axis=0))


def test_iou_is_the_analysis_overlap(playback, shared_data):
    """ATOM's average overlap on the sequence equals the reference toolkit's figure."""
    reference = json.loads((shared_data / "expected_metrics.json").read_text())
    expected = reference["otb_mini3/ATOM"]["per_sequence"][SEQUENCE]["avg_overlap"] / 100
    atom = next(track for track in playback.tracks if track.name == "ATOM")
    assert atom.average_overlap == pytest.approx(expected, abs=1e-6)


def test_contact_sheet_shows_the_twelve_hardest_frames(playback, football, result_root):
    gt = football.ground_truth_rect
    ious = [expected_iou(np.loadtxt(next((result_root / name).glob("*.txt")), delimiter=delimiter), gt)
            for name, delimiter in (("ATOM", ","), ("Drifting", "\t"), ("Jitter", None))]
    mean_iou = np.mean(ious, axis=0)
    expected = brute_force_hardest(mean_iou, 12)
    assert [index for index, _ in playback.hardest] == expected
    np.testing.assert_allclose([value for _, value in playback.hardest], mean_iou[expected], atol=1e-12)

    sheet = cv2.imread(str(playback.contact_sheet))
    tile_height = round(football_frame_height(football) * TILE_WIDTH / football_frame_width(football))
    assert sheet.shape == (3 * tile_height, TILE_COLUMNS * TILE_WIDTH, 3)
    for row in range(3):
        for column in range(TILE_COLUMNS):
            tile = sheet[row * tile_height:(row + 1) * tile_height, column * TILE_WIDTH:(column + 1) * TILE_WIDTH]
            assert tile.std() > 10, f"tile {row},{column} is blank"


def football_frame_height(seq) -> int:
    return cv2.imread(seq.frames[0]).shape[0]


def football_frame_width(seq) -> int:
    return cv2.imread(seq.frames[0]).shape[1]


def test_short_playback_has_one_tile_per_frame(football, result_root, tmp_path):
    result = render_playback(football, trackers_in_root(result_root), tmp_path, max_frames=5, tiles=12)
    assert result.num_frames == len(read_video(result.video)) == 5
    assert sorted(index for index, _ in result.hardest) == [0, 1, 2, 3, 4]
    sheet = cv2.imread(str(result.contact_sheet))
    assert sheet.shape[0] == 2 * round(football_frame_height(football) * TILE_WIDTH / football_frame_width(football))
    assert sheet[-10:, -TILE_WIDTH:].max() == 0  # 5 tiles on a 4-column grid: the last 3 slots stay empty


# ------------------------------------------------------------------------------------------------- CLI

@pytest.fixture
def playback_cli(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO_ROOT / "tracking"))
    return importlib.import_module("playback")


def cli_args(shared_data, *extra: str) -> list[str]:
    return ["--dataset", "otb", "--dataset_root", str(shared_data / "otb_mini_sequences"), *extra]


def test_cli_shows_published_results_beside_others(playback_cli, shared_data, result_root, tmp_path, capsys):
    argv = cli_args(shared_data, "--sequence", "Crossing", "--tracker",
                    f"ATOM-published={shared_data / 'otb100_results_ATOM'}", "--max_frames", "8",
                    "--tiles", "4", "--output_dir", str(tmp_path))
    assert run_main(playback_cli.main, argv) == 0
    out = capsys.readouterr().out
    assert "ATOM-published: average overlap" in out and "crossing.txt" in out
    assert len(read_video(tmp_path / "otb_Crossing_playback.mp4")) == 8
    assert (tmp_path / "otb_Crossing_hardest.png").is_file()


def one_line_error(capsys, playback_cli, argv, *fragments: str) -> None:
    assert run_main(playback_cli.main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]


def test_cli_bad_input_is_one_line(playback_cli, shared_data, result_root, tmp_path, capsys):
    atom = f"ATOM={result_root / 'ATOM'}"
    out = ["--output_dir", str(tmp_path / "out")]
    one_line_error(capsys, playback_cli, cli_args(shared_data, "--sequence", "Basketbal", "--tracker", atom, *out),
                   "no sequence(s) 'Basketbal'")
    one_line_error(capsys, playback_cli, cli_args(shared_data, "--sequence", "Crossing", "--tracker", atom, *out),
                   "tracker 'ATOM', sequence 'Crossing'", str(result_root / 'ATOM'))
    one_line_error(capsys, playback_cli,
                   cli_args(shared_data, "--sequence", SEQUENCE, "--tracker", f"X={tmp_path / 'absent'}", *out),
                   "does not exist")
    one_line_error(capsys, playback_cli, cli_args(shared_data, "--sequence", SEQUENCE, *out), "no tracker to show")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    one_line_error(capsys, playback_cli,
                   cli_args(shared_data, "--sequence", SEQUENCE, "--tracker", atom, "--output_dir", str(blocker)),
                   "cannot create output folder", "--output_dir")
    bad = tmp_path / "bad" / "ATOM"
    bad.mkdir(parents=True)
    (bad / "Football1.txt").write_text("1,2,3\n")
    one_line_error(capsys, playback_cli, cli_args(shared_data, "--sequence", SEQUENCE, "--tracker", f"ATOM={bad}",
                                                  *out), "Football1.txt")
    ambiguous = tmp_path / "ambiguous"
    ambiguous.mkdir()
    for name in ("Football1.txt", "otb_football1.txt"):
        (ambiguous / name).write_text((result_root / "ATOM" / "football1.txt").read_text())
    one_line_error(capsys, playback_cli, cli_args(shared_data, "--sequence", SEQUENCE, "--tracker", f"A={ambiguous}",
                                                  *out), "tracker 'A'", "Football1.txt", "otb_football1.txt")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
