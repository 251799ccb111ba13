"""The evaluation runner: case tables, the engine hook, and outputs whose numbers match direct metric calls."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from lato_core.errors import FaceEditError
from lato_core.evaluation import COLUMNS, load_cases, register_engine, run_evaluation
from lato_core.evaluation.__main__ import main
from lato_core.evaluation.runner import get_engine
from lato_core.face.landmarks import FaceLandmarks
from lato_core.metrics import detect_matching_face, identity_distance, landmark_error, measure_edit, ssim

CASES = """id,photo,instruction,yaw
turn15,sample:astronaut,turn her head 15 degrees left,
smile,sample:astronaut,make her smile slightly,
tilt,sample:grace_hopper,tilt her head 10 degrees to the left,-5
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("evaluation")
    (folder / "cases.csv").write_text(CASES)
    out = folder / "out"
    assert main(["--engine", "warp", "--cases", str(folder / "cases.csv"), "--out", str(out)]) == 0
    with open(out / "results.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return out, rows


def test_default_table_and_folders(tmp_path, astronaut_rgb):
    cases = load_cases("default")
    assert len(cases) == 10 and {c.photo for c in cases} == {"sample:astronaut", "sample:grace_hopper"}
    assert len({c.case_id for c in cases}) == 10
    Image.fromarray(astronaut_rgb).save(tmp_path / "me.jpg")
    folder_cases = load_cases(tmp_path)
    assert len(folder_cases) == 5 and folder_cases[0].photo == "me.jpg"
    (tmp_path / "cases.csv").write_text("photo,instruction,yaw\nme.jpg,smile,10\n")
    (case,) = load_cases(tmp_path)
    assert (case.photo, case.instruction, case.yaw, case.case_id) == ("me.jpg", "smile", 10.0, "case001")
    (tmp_path / "bad.csv").write_text("picture,instruction\nme.jpg,smile\n")
    with pytest.raises(FaceEditError, match="photo"):
        load_cases(tmp_path / "bad.csv")


def test_engine_hook(tmp_path):
    with pytest.raises(FaceEditError, match="register_engine"):
        get_engine("lato")
    register_engine("copy_for_test", lambda crop, source, target, instruction: crop.clone())
    (tmp_path / "one.csv").write_text("photo,instruction\nsample:astronaut,turn her head 15 degrees left\n")
    (row,) = run_evaluation(load_cases(tmp_path / "one.csv"), "copy_for_test", tmp_path / "out", progress=False)
    # An engine that returns the source untouched: SSIM 1, and Eq. 7 takes all the identity credit away.
    assert row["ssim"] == pytest.approx(1.0) and row["identity_distance"] < 0.1 and row["rectified_identity"] == 0.0
    assert row["landmark_error"] > 5.0  # the face did not move to the target


def test_outputs_exist_and_parse(run, capsys):
    out, rows = run
    assert [r["id"] for r in rows] == ["turn15", "smile", "tilt"] and list(rows[0]) == list(COLUMNS)
    assert all(r["error"] == "" and r["engine"] == "warp" for r in rows)
    assert [float(r["requested_yaw"]) for r in rows] == [15.0, 0.0, -5.0]
    for r in rows:
        assert float(r["landmark_error"]) < 15 and float(r["identity_distance"]) < 0.6
        assert 0 < float(r["ssim"]) < 1 and float(r["edit_seconds"]) < float(r["case_seconds"])
    table = (out / "results.md").read_text()
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert len(lines) == 1 + 3 + 1 and "**mean**" in lines[-1]  # header, cases, mean
    mean_error = float(lines[-1].split("|")[3])
    assert mean_error == pytest.approx(np.mean([float(r["landmark_error"]) for r in rows]), abs=0.006)
    plot = Image.open(out / "landmark_error_vs_yaw.png")
    assert plot.size == (600, 400)


def test_progress_bar_on_console(tmp_path, capsys):
    (tmp_path / "one.csv").write_text("photo,instruction\nsample:astronaut,make her smile slightly\n")
    assert main(["--cases", str(tmp_path / "one.csv"), "--out", str(tmp_path / "o")]) == 0
    assert "evaluating warp" in capsys.readouterr().err
    assert main(["--engine", "lato", "--cases", str(tmp_path / "one.csv"), "--out", str(tmp_path / "o")]) == 2
    assert "--lato-models" in capsys.readouterr().err


def test_numbers_match_direct_metric_calls(run):
    out, rows = run
    for row in rows:
        source = np.asarray(Image.open(out / "images" / f"{row['id']}_source.png"))
        edit = np.asarray(Image.open(out / "images" / f"{row['id']}_edit.png"))
        record = json.loads((out / "cases" / f"{row['id']}.json").read_text())
        face, target = FaceLandmarks.from_dict(record["source"]), FaceLandmarks.from_dict(record["target"])
        detected = detect_matching_face(edit, target)
        assert float(row["landmark_error"]) == pytest.approx(landmark_error(detected, target).l1, abs=1e-5)
        assert float(row["ssim"]) == pytest.approx(ssim(source, edit), abs=1e-6)
        distance = identity_distance(source, edit, face, detected)
        assert float(row["identity_distance"]) == pytest.approx(distance, abs=1e-5)
        metrics, _ = measure_edit(source, edit, target, face, record["report"]["params"])
        for key in ("expected_amplitude", "actual_amplitude", "rectified_identity", "landmark_error_euclidean"):
            assert float(row[key]) == pytest.approx(metrics[key], abs=1e-5), key


@pytest.mark.slow
def test_lato_engine_runs_a_case_from_model_files(tmp_path):
    """The runner through the LaTo engine with tiny random weights in the released layouts."""
    from lato_core.evaluation import runner
    from lato_core.evaluation.cases import Case
    from lato_core.evaluation.lato_engine import LaToFiles, make_lato_engine
    from tests import tiny_lato

    paths = tiny_lato.write_all(tmp_path / "models", vae=True)
    files = LaToFiles.from_models_dir(tmp_path / "models", **{role: str(p.relative_to(tmp_path / "models"))
                                                              for role, p in paths.items() if role != "plain_flux"})
    register_engine("lato", make_lato_engine(files, steps=1, device="cpu"))
    try:
        rows = run_evaluation([Case("c1", "sample:astronaut", "smile")], "lato", tmp_path / "out", progress=False)
    finally:
        runner._ENGINES.pop("lato", None)
    assert rows[0].get("error") is None, rows
    assert rows[0]["edit_seconds"] > 0 and (tmp_path / "out" / "images" / "c1_edit.png").is_file()
    assert 0.0 <= rows[0]["ssim"] < 0.99  # random weights change the crop
