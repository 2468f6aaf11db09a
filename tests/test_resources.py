"""What the package ships and where it finds the sample clips."""

from pathlib import Path

from videoseq.resources import CONFIGS, VIDEOS_VARIABLE, shared_videos

from conftest import REPO


def test_the_sample_clips_are_found_beside_the_checkout_or_where_the_variable_says(monkeypatch, tmp_path):
    monkeypatch.delenv(VIDEOS_VARIABLE, raising=False)
    assert shared_videos() == REPO.parent / "shared" / "videos"
    monkeypatch.setenv(VIDEOS_VARIABLE, str(tmp_path))
    assert shared_videos() == tmp_path


def test_the_configs_are_package_data_and_the_top_level_folder_is_the_same_one():
    shipped = {p.name for p in CONFIGS.glob("*.yaml")}
    assert {"demo.yaml", "captions.yaml", "gestures.yaml"} <= shipped
    assert CONFIGS.parent == REPO / "videoseq"
    assert (REPO / "configs").resolve() == CONFIGS.resolve()  # users run `videoseq train configs/demo.yaml`
    pyproject = (REPO / "pyproject.toml").read_text()
    assert '[tool.setuptools.package-data]\nvideoseq = ["configs/*.yaml"]' in pyproject  # the wheel ships them
    assert all(Path(CONFIGS / name).is_file() for name in shipped)
