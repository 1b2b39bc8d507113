"""Smoke tests of the quality studies in studies/: each runs on the synthetic data and a tiny
run, and prints its table."""
import re

from conftest import ROOT, python


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
