"""Smoke tests of the quality experiments in studies/: each runs on a tiny configuration and prints
its table (its figures are not checked, only its shape). studies/supcon.py's loss is checked by
hand, studies/audit_training.py's noise injection, and studies/label_noise.py's twins."""
import re

import pytest

from conftest import ROOT, python

NUMBER = r"[0-9]+(\.[0-9]+)?"


def table_rows(stdout: str) -> list[list[str]]:
    rows = [line.strip("|").split("|") for line in stdout.splitlines() if line.startswith("| ")]
    return [[cell.strip() for cell in row] for row in rows if not row[0].strip() == "---"]


def test_label_noise_splits_test_titles_by_twin_and_scores_each_run(ddp_run, small_csv, tmp_path):
    import json
    import sys

    from vacancy.synth import main as synth
    sys.path.insert(0, str(ROOT / "studies"))
    from label_noise import words
    assert words("QA Specialists, quality assurance specialist") == \
        words("quality assurance specialist qa specialist")

    out = python("studies/label_noise.py", "--data", small_csv, "--runs", ddp_run).stdout
    twinned, total = map(int, re.search(r"([0-9]+) of ([0-9]+) test titles have a train or val "
                                        r"twin", out).groups())
    assert re.search(r"the whole file: [0-9]+ pairs of titles have the same words; 100.0% of "
                     r"them the same label set", out)  # the synthetic labels follow from words
    rows = {r[0]: r[1:] for r in table_rows(out)[1:]}
    assert list(rows) == ["with a twin", "without", "all"]
    assert twinned and rows["with a twin"][1] == "1.000 / 1.000"
    assert [int(rows[name][0]) for name in rows] == [twinned, total - twinned, total]
    micro = json.loads((ddp_run / "metrics.json").read_text())["micro_f1"]
    assert rows["all"][2].startswith(f"{micro:.3f} / ")  # the run's own test micro-F1

    other = tmp_path / "other.csv"
    synth(["--rows", "800", "--seed", "2", "--out", str(other)])
    proc = python("studies/label_noise.py", "--data", other, "--runs", ddp_run, check=False)
    assert proc.returncode == 2 and f"{ddp_run}: its test titles are not those of" in proc.stderr
    proc = python("studies/label_noise.py", "--data", small_csv, "--runs", tmp_path, check=False)
    assert proc.returncode == 2 and f"{tmp_path}/test_predictions.csv: not found" in proc.stderr


def test_refit_transformer_trains_one_more_epoch_over_train_and_val(ddp_run, small_csv, tmp_path):
    import shutil

    from vacancy.data import load_splits
    shutil.copytree(ddp_run / "best", tmp_path / "study" / "s1" / "best")
    out = python("studies/refit_transformer.py", "--study", tmp_path / "study", "--data", small_csv,
                 "--batch-size", 32).stdout
    parts = load_splits(small_csv).parts
    assert f"one more epoch over {len(parts.train) + len(parts.val)} titles" in out
    rows = table_rows(out)[1:]
    assert [r[0] for r in rows] == ["transformer", "transformer, one more epoch",
                                    "mix of 3, refit", "mix of 3, refit, one more epoch",
                                    "same, kNN on its vectors"]
    assert all(re.fullmatch(rf"{NUMBER} ± {NUMBER}", cell) for r in rows for cell in r[1:])
    assert (tmp_path / "study" / "s1" / "study.npz").exists()  # the run's own probabilities


def test_knn_study_scores_each_part_and_the_other_mixes(ddp_run, small_csv, tmp_path):
    import shutil
    run = tmp_path / "study" / "s1"
    shutil.copytree(ddp_run / "best", run / "best")
    shutil.copy(ddp_run / "config.json", run)
    out = python("studies/knn_study.py", "--study", tmp_path / "study", "--data", small_csv,
                 "--variants").stdout
    rows = table_rows(out)[1:]
    assert [r[0] for r in rows] == ["transformer", "tfidf", "knn", "mix of 2", "mix of 3",
                                    "tfidf, refit", "mix of 3, refit", "mix of 3, refit, stacked",
                                    "mix of 4, refit"]
    assert all(re.fullmatch(rf"{NUMBER} ± {NUMBER}", cell) for r in rows for cell in r[1:])
    assert re.search(r"s1: weights of the mix of 4: transformer [0-9.]+, tfidf [0-9.]+, "
                     r"knn [0-9.]+, knn, pretrained [0-9.]+", out)


def test_supcon_loss_by_hand():
    import sys

    import numpy as np
    import torch
    sys.path.insert(0, str(ROOT / "studies"))
    from supcon import supcon
    vectors = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 2.0]])  # the third is normalised
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])  # 0 and 1 share a label
    s = np.array([[1.0, 0.6, 0.0], [0.6, 1.0, 0.8]]) / 0.1  # cosines of titles 0 and 1 to all
    by_hand = -np.mean([s[0, 1] - np.log(np.exp(s[0, 1]) + np.exp(s[0, 2])),
                        s[1, 0] - np.log(np.exp(s[1, 0]) + np.exp(s[1, 2]))])
    assert supcon(vectors, labels).item() == pytest.approx(by_hand, rel=1e-5)
    alone = torch.ones(3, 2, requires_grad=True)  # no title shares a label: no term, still a graph
    loss = supcon(alone, torch.eye(3, 2))
    assert loss.item() == 0.0 and loss.requires_grad


def test_audit_noise_saves_probabilities_that_audit_variants_scores(
        small_csv, tiny_model, tmp_path):
    out = python("studies/audit_noise.py", "--data", small_csv, "--noise", 0.1, 0, "--folds", 3,
                 "--encoder", tiny_model, "--work", tmp_path, "--save-probs").stdout
    rows = {r[0]: r for r in table_rows(out)[1:]}
    assert set(rows) == {"small-noise10", "small-noise0"} and rows["small-noise10"][1] == "80"
    assert re.fullmatch(f"{NUMBER} / {NUMBER} / {NUMBER}", rows["small-noise10"][8])  # AUPRC/kind
    import numpy as np
    saved = np.load(tmp_path / "small-noise10.npz")
    assert saved["truth"].sum() == 80 and saved["targets"].shape == (800, len(saved["names"]))
    assert (saved["kind"] >= 0).sum() == 80 and saved["mixed"].shape[1] == len(saved["names"])
    out = python("studies/audit_variants.py", tmp_path / "small-noise10.npz", "--clean",
                 tmp_path / "small-noise0.npz").stdout
    tables = [table_rows(part) for part in out.split("\nFiltering")]
    ranking = {r[0]: r[1] for r in tables[0][1:]}
    default = ranking["mix (audit: weights by F1) / self_confidence, worst area"]
    assert re.fullmatch(f"{NUMBER} / {NUMBER}", default)
    assert re.search(r"small-noise0: the audit flags [0-9]+ of 800 rows", out)


@pytest.mark.slow
def test_audit_encoder_trains_on_the_corrupted_file_and_scores_both_encoders(
        small_csv, tiny_model, tmp_path):
    out = python("studies/audit_encoder.py", "--data", small_csv, "--work", tmp_path,
                 "--encoder", tiny_model, "--train-args",
                 f"--model {tiny_model} --epochs 1 --freeze-epochs 0 --ensemble off").stdout
    rows = table_rows(out)[1:]
    assert [r[1:3] for r in rows] == [[str(tiny_model), "all"], [str(tiny_model), "train"],
                                      [str(tiny_model), "val + test"], ["the run's best/", "all"],
                                      ["the run's best/", "train"],
                                      ["the run's best/", "val + test"]]
    run = tmp_path / "small-noise10" / "run"
    assert (run / "metrics.json").exists()
    for r in rows[::3]:  # all rows: the 80 injected, train and val + test adding up to them
        assert r[3] == "80" and re.fullmatch(NUMBER, r[4])
    assert int(rows[1][3]) + int(rows[2][3]) == 80 and 0 < int(rows[1][3]) < 80


def test_audit_training_corrupts_the_share_asked_in_equal_kinds(small_csv):
    import sys

    import numpy as np
    import pandas as pd

    from vacancy.data import parse_labels
    sys.path.insert(0, str(ROOT / "studies"))
    from audit_training import corrupt
    df = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    usable = np.arange(1, len(df))  # row 0 stays as it is
    noisy, log = corrupt(df, usable, 0.1, seed=0)
    again, _ = corrupt(df, usable, 0.1, seed=0)
    pd.testing.assert_frame_equal(noisy, again)  # a fixed seed, a fixed corruption
    assert len(log) == round(0.1 * len(usable)) and 0 not in set(log["row"])
    assert log["kind"].value_counts().to_dict() == {"swap": 27, "add": 27, "drop": 26}
    before = [set(parse_labels(a)) for a in df["area"]]
    after = [set(parse_labels(a)) for a in noisy["area"]]
    changed = [i for i in range(len(df)) if before[i] != after[i]]
    assert changed == sorted(log["row"])  # the rows listed, and no others
    for r in log.itertuples():
        old, new = before[r.row], after[r.row]
        if r.kind == "add":
            assert old < new and len(new - old) == 1
        elif r.kind == "drop":
            assert new < old and len(old - new) == 1 and new
        else:
            assert len(old - new) == 1 and len(new - old) == 1
