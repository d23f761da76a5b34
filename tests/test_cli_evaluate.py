import json

import numpy as np
import pytest
import tifffile

from napari_probseg.cli import main
from napari_probseg.sample_data import load_sample


def test_help_is_readable(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "predict" in text and "train" in text and "evaluate" in text and "examples" in text


def test_predict_writes_all_outputs(tmp_path, tiny_checkpoint):
    img = load_sample("C10")[:, :96, :128]
    tifffile.imwrite(tmp_path / "w1.tif", img[0])
    tifffile.imwrite(tmp_path / "w2.tif", img[1])
    rc = main(["predict", f"{tmp_path / 'w1.tif'},{tmp_path / 'w2.tif'}", "--model", str(tiny_checkpoint),
               "--out", str(tmp_path / "out"), "--draws", "2", "--png", "--device", "cpu"])
    assert rc == 0
    for suffix in ("_labels.tif", "_probabilities.npz", "_entropy.tif", "_peaks.csv", "_review.csv", "_worms.csv", "_overview.png"):
        assert (tmp_path / "out" / f"w1{suffix}").exists(), suffix
    assert tifffile.imread(tmp_path / "out" / "w1_labels.tif").shape == (96, 128)
    with np.load(tmp_path / "out" / "w1_probabilities.npz") as z:
        assert z["probabilities"].dtype == np.float16 and z["instances"].shape[1:] == (96, 128)


@pytest.mark.parametrize("make, message", [
    (lambda p: tifffile.imwrite(p, np.zeros((64, 64, 3), np.uint8)), "RGB"),
    (lambda p: tifffile.imwrite(p, np.zeros((64, 64), np.uint16)), "one channel"),
    (lambda p: p.write_bytes(b"not a tiff"), "cannot read image"),
])
def test_bad_input_gives_message_not_traceback(tmp_path, tiny_checkpoint, capsys, make, message):
    path = tmp_path / "bad.tif"
    make(path)
    rc = main(["predict", str(path), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_bad_min_size_named(tmp_path, tiny_checkpoint, capsys):
    rc = main(["predict", "x.tif", "--model", str(tiny_checkpoint), "--out", str(tmp_path), "--min-size", "0"])
    assert rc == 2 and "--min-size: must be an integer >= 1" in capsys.readouterr().err


def test_missing_model_named(tmp_path, capsys):
    rc = main(["predict", "x.tif", "--model", "no-such-model", "--out", str(tmp_path)])
    assert rc == 2 and "no model named 'no-such-model'" in capsys.readouterr().err


def test_evaluate_end_to_end_on_two_wells(tmp_path, tiny_checkpoint, data_dir):
    out = tmp_path / "eval"
    rc = main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data_dir), "--wells", "C03", "D24", "C04",
               "--out", str(out), "--draws", "2", "--device", "cpu"])
    assert rc == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["wells"] == ["C03", "C04"] and "D24" in m["skipped_wells"]
    for key in ("avAP", "AP50", "AP75", "recall80", "avAP_dsb", "pavpu", "simulation", "binarize",
                "mc_draws", "seconds_per_image"):
        assert key in m
    assert [r["k"] for r in m["simulation"]] == [0, 5, 10, 15, 20] and m["mc_draws"] == 2
    with np.load(out / "predictions" / "C03.npz") as z:
        assert z["probabilities"].dtype == np.float16 and z["instances"].dtype == bool
    # the headline figures, recomputed from the saved instances by brute force (PatchPerPix protocol:
    # per well and IoU cut, TP of a one-to-one max-IoU matching / number of predictions; mean over both)
    from scipy.optimize import linear_sum_assignment

    from napari_probseg.data import load_masks

    cuts = np.round(np.arange(0.5, 0.96, 0.05), 2)
    prec = []
    for w in ("C03", "C04"):
        with np.load(out / "predictions" / f"{w}.npz") as z:
            pred = z["instances"]
        gt = load_masks(data_dir, w)
        iou = np.array([[(p & g).sum() / (p | g).sum() for g in gt] for p in pred]).reshape(len(pred), len(gt))
        rows, cols = linear_sum_assignment(-iou) if iou.size else ([], [])
        matched = iou[rows, cols]
        prec.append([(matched >= t).sum() / max(len(pred), 1) for t in cuts])
    prec = np.mean(prec, axis=0)
    assert m["avAP"] == pytest.approx(prec.mean()) and m["AP50"] == pytest.approx(prec[0])
    assert m["AP75"] == pytest.approx(prec[5])
    report = (out / "report.md").read_text()
    assert "PatchPerPix" in report and "C03, C04" in report and (out / "uncertainty_curves.png").exists()
    # the review list of every well, scored against the ground truth, beside Table 2
    for w in ("C03", "C04"):
        header = (out / "review" / f"{w}.csv").read_text().splitlines()[0]
        assert header.startswith("rank,y,x,kind,score,instances")
    r = m["review"]
    assert set(r["per_well"]) == {"C03", "C04"} and set(r["items"]["found_fraction"]) == {"1", "3", "5", "10"}
    assert r["items"]["errors"] == r["patches"]["errors"] == sum(v["items"]["errors"] for v in r["per_well"].values())
    assert r["items"]["errors"] > 0  # a 2-draw toy model gets real wells wrong
    assert [x["k"] for x in r["simulation_per_well"]] == list(range(11))
    assert r["simulation_per_well"][0]["avAP"] == pytest.approx(m["avAP"])  # k = 0: nothing corrected
    assert "## Review list (suspected errors)" in report
    # --reuse: the same numbers from the saved probabilities, without the network
    again = tmp_path / "again"
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data_dir), "--wells", "C03", "C04",
                 "--out", str(again), "--draws", "2", "--device", "cpu", "--reuse", str(out)]) == 0
    m2 = json.loads((again / "metrics.json").read_text())
    assert m2["avAP"] == m["avAP"] and m2["review"]["items"] == r["items"] and m2["simulation"] == m["simulation"]
    assert (again / "review" / "C03.csv").read_text() == (out / "review" / "C03.csv").read_text()
    c = m["counts"]  # C03 is in test_fold1, C04 in test_fold2: each is scored by the other's calibration
    assert set(c["per_well"]) == {"C03", "C04"} and c["protocol"].startswith("2-fold")
    assert [c["per_well"][w]["true"] for w in ("C03", "C04")] == [15, 15]  # BBBC010's masks: 15 worms each
    for r in c["per_well"].values():
        assert r["low"] <= r["count"] <= r["high"]
    assert 0 <= c["coverage"] <= 1 and c["mean_width"] >= 0 and len(c["calibrations"]) == 2
    assert "Counts with intervals" in report and (out / "counts.png").exists()
    assert m2["counts"]["per_well"] == c["per_well"]  # the draw counts are saved: --reuse gives the same intervals
    third = tmp_path / "third"  # ... and saved again: reusing a reused run still has them
    assert main(["evaluate", "--model", str(tiny_checkpoint), "--data", str(data_dir), "--wells", "C03", "C04",
                 "--out", str(third), "--draws", "2", "--device", "cpu", "--reuse", str(again)]) == 0
    m3 = json.loads((third / "metrics.json").read_text())
    assert m3["counts"]["inputs"]["C03"]["draw_counts"] == c["inputs"]["C03"]["draw_counts"] != []
    ap = c["after_proofreading"]  # the count after fixing the top 5 review items of each well (ground truth as answer)
    assert ap["k"] == 5 and set(ap["per_well"]) == {"C03", "C04"} and ap["mae"] >= 0
    assert ap["mae_before"] == pytest.approx(np.mean([abs(r["before"] - r["true"]) for r in ap["per_well"].values()]))
    assert "After proofreading the top 5 review items" in report
