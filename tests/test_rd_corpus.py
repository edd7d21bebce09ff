"""bench.rd corpus: the quick set is cut from the shared media and cached; a user's folder is scanned as given."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from m3cvcav.bench.rd import corpus
from m3cvcav.bench.rd.video import read_video, write_y4m
from m3cvcav.core.errors import UsageError


def test_quick_corpus_is_cut_cached_and_described(media, tmp_path, monkeypatch):
    media("clips/bigbuckbunny.mp4")
    monkeypatch.setenv("M3CVC_CORPUS_CACHE", str(tmp_path))
    said: list[str] = []
    folder, clips = corpus.build_default(True, log=said.append)
    assert folder == tmp_path / "quick" and len(said) == len(clips) == len(corpus.default_recipes(True))
    for clip, recipe in zip(clips, corpus.default_recipes(True)):
        video = read_video(corpus.clip_path(folder, clip))
        assert (video.width, video.height, len(video.frames)) == (clip.width, clip.height, recipe.frames)
        assert clip.sha256 == corpus.sha256_file(folder / clip.path)
        assert clip.license != "unknown (user-supplied)" and clip.color == "bt709 limited"
    # the zoom clip moves: consecutive frames differ
    zoom = read_video(folder / clips[1].path)
    assert np.abs(zoom.frames[0].astype(int) - zoom.frames[-1]).mean() > 2
    said.clear()
    again_folder, again = corpus.build_default(True, log=said.append)
    assert said == [] and again == clips


def test_user_folder_is_scanned_as_given(tmp_path):
    planes = [np.full((72, 64), i * 20, np.uint8) for i in range(6)]
    write_y4m(tmp_path / "a.y4m", planes, Fraction(30000, 1001))
    (tmp_path / "notes.txt").write_text("not a video")
    (clip,) = corpus.scan_folder(tmp_path, max_frames=4)
    assert (clip.name, clip.width, clip.height, clip.frames, clip.fps) == ("a", 64, 48, 4, "30000/1001")
    assert clip.sha256 == corpus.sha256_file(tmp_path / "a.y4m")
    assert corpus.clip_path(tmp_path, clip) == (tmp_path / "a.y4m").resolve()


def test_user_folder_errors(tmp_path):
    with pytest.raises(UsageError, match="holds no videos"):
        corpus.scan_folder(tmp_path)
    with pytest.raises(UsageError, match="not a folder"):
        corpus.scan_folder(tmp_path / "missing")


@pytest.mark.slow  # a whole bench rd run
def test_rd_runs_on_a_user_folder(tmp_path):
    import json

    import cv2

    from m3cvcav.bench import rd
    from m3cvcav.bench.rd.color import rgb_to_yuv420

    rng = np.random.default_rng(0)
    big = (cv2.GaussianBlur(rng.random((72, 200, 3)).astype(np.float32), (0, 0), 2) * 600 - 170).clip(0, 255)
    frames = [rgb_to_yuv420(np.ascontiguousarray(big[:, 4 * i: 4 * i + 128]).astype(np.uint8)) for i in range(8)]
    (tmp_path / "clips").mkdir()
    write_y4m(tmp_path / "clips" / "pan.y4m", frames, Fraction(25))
    out = tmp_path / "report"
    assert rd.main(["--corpus", str(tmp_path / "clips"), "--profiles", "", "--baselines", "x265", "--kbps", "30,300",
                    "--sample", "2", "--no-semantic", "--no-isolated", "--out", str(out)]) == 0
    data = json.loads((out / "results.json").read_text())
    runs = data["clips"]["pan"]["runs"]["x265"]
    assert data["corpus"][0]["license"] == "unknown (user-supplied)" and len(runs) == 2
    low, high = sorted(runs, key=lambda r: r["kbps"])
    assert high["metrics"]["vmaf"] > low["metrics"]["vmaf"] and high["metrics"]["ms_ssim"] > low["metrics"]["ms_ssim"]
    assert data["clips"]["pan"]["crop"]["points"][0]["codec"] == "x265" and (out / "crops_pan.png").exists()


def test_rd_ladder_usage_errors():
    from m3cvcav.bench import rd

    with pytest.raises(UsageError, match="either --kbps or --bpp"):
        rd.main(["--kbps", "5", "--bpp", "0.01", "--corpus", "."])
    with pytest.raises(UsageError, match="--kbps"):
        rd.main(["--kbps", "5,x", "--corpus", "."])
