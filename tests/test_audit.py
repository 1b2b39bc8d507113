"""`python -m vacancy.audit`: conflicts found exactly, injected label errors ranked high, the
outputs' columns and sections, `row` pointing into the input, bad input in one line."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import python
from vacancy import audit
from vacancy.conflicts import find_conflicts, words
from vacancy.data import read_csv
from vacancy.suspects import judge, make_folds, per_area_table

REPORT_SECTIONS = ["## How to read this", "## Conflicts", "## Suspects", "## Per area",
                   "## Areas most often confused"]


def test_words_key():
    assert words("QA Specialists, quality assurance specialist") == \
        words("quality assurance specialist qa specialist")
    assert words("программист java") == words("Java программист")  # any script has words
    assert words("java developer") != words("java designer")


def test_conflicts_are_exactly_the_injected_duplicates(small_csv):
    df = read_csv(small_csv)
    titles, labels = df["title"].tolist(), df["labels"].tolist()
    assert find_conflicts(titles, labels).empty  # synthetic labels follow from the words
    names = sorted({x for row in labels for x in row})
    picked = np.random.default_rng(0).choice(len(df), 15, replace=False)
    for i in picked:  # the same title again, with one more area it does not have
        titles.append(titles[i])
        labels.append(labels[i] + [next(x for x in names if x not in labels[i])])
    found = find_conflicts(titles, labels)
    injected = {titles[i] for i in picked}
    assert {titles[i] for i in found["index"]} == injected
    assert set(found["match"]) == {"same title"}
    for title in injected:  # every row of the title is in the group, the copy disagrees
        rows = [i for i, t in enumerate(titles) if t == title]
        assert set(found.loc[found["index"].isin(rows), "index"]) == set(rows)
    assert found["disagrees"].sum() >= len(picked)


def test_same_words_conflicts_keep_their_groups():
    found = find_conflicts(["qa specialist", "qa specialists", "specialist qa", "java dev", "x"],
                           [["qa"], ["qa"], ["tester"], ["programmer"], ["y"]])
    assert found["index"].tolist() == [0, 1, 2]
    assert set(found["match"]) == {"same words"} and found["majority"].iloc[0] == "qa"
    assert found["disagrees"].tolist() == [False, False, True]


def test_folds_keep_groups_whole_and_spread_label_sets():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 300, 2000)
    keys = np.array(["a", "b", "a c", "d"])[groups % 4]
    folds = make_folds(keys, groups, 5, 0)
    assert pd.Series(folds).groupby(groups).nunique().max() == 1
    shares = pd.crosstab(keys, folds, normalize="columns")
    assert (shares.max(axis=1) - shares.min(axis=1)).max() < 0.1


def test_judge_reduces_per_area_issues_as_cleanlab_does():
    from cleanlab.multilabel_classification import dataset
    from cleanlab.multilabel_classification.filter import find_label_issues
    rng = np.random.default_rng(0)
    targets = (rng.random((400, 4)) < 0.3).astype(np.uint8)
    targets[~targets.any(axis=1), 0] = 1
    probs = np.clip(0.7 * targets + 0.4 * rng.random(targets.shape), 0, 1)
    flip = rng.choice(400, 30, replace=False)
    targets[flip, 1] = 1 - targets[flip, 1]
    labels = [np.flatnonzero(r).tolist() for r in targets]
    judged = judge(targets, probs)
    assert (judged.flagged == find_label_issues(labels, probs)).all()
    assert 1 - judged.flagged.mean() == pytest.approx(
        dataset.overall_multilabel_health_score(labels, probs))
    common = dataset.common_multilabel_issues(labels, probs, class_names=list("abcd"))
    table = per_area_table(targets, judged, list("abcd")).set_index("area")
    for row in common.itertuples():
        column = "looks_wrong" if row._3 else "looks_missing"  # In Given Label
        assert table.loc[row._1, column] == row._5  # Class Name, Num Examples


def test_quality_is_the_worst_areas_self_confidence():
    from cleanlab.multilabel_classification.rank import get_label_quality_scores
    rng = np.random.default_rng(0)
    targets = (rng.random((300, 5)) < 0.3).astype(np.uint8)
    targets[~targets.any(axis=1), 0] = 1
    probs = rng.random(targets.shape)
    judged = judge(targets, probs)
    worst = np.where(targets == 1, probs, 1 - probs).min(axis=1)
    assert judged.quality == pytest.approx(worst)
    # not cleanlab's default aggregate, which averages in the areas that look right
    default = get_label_quality_scores([np.flatnonzero(r).tolist() for r in targets], probs)
    assert not np.allclose(judged.quality, default)


@pytest.fixture(scope="module")
def corrupted(tmp_path_factory, small_csv):
    """small_csv with 24 rows' areas swapped for a wrong one, 4 titles repeated with other areas,
    and 3 rows without a title (read_csv drops them, so positions shift)."""
    raw = pd.read_csv(small_csv, dtype=str, keep_default_na=False)
    names = sorted({a for row in raw["area"] for a in row.split()})
    rng = np.random.default_rng(1)
    swapped = rng.choice(len(raw), 24, replace=False)
    for i in swapped:
        given = raw.at[i, "area"].split()
        given[0] = next(a for a in rng.permutation(names) if a not in given)
        raw.at[i, "area"] = " ".join(given)
    twins = raw.iloc[[3, 50, 120, 400]].assign(area="assistant doc_writer")
    blank = pd.DataFrame({"title": ["", " ", ""], "area": ["admin", "admin", "coord"]})
    raw = pd.concat([blank.iloc[:2], raw, blank.iloc[2:], twins], ignore_index=True)
    path = tmp_path_factory.mktemp("audit") / "corrupted.csv"
    raw.to_csv(path, index=False)
    return path, raw, set((swapped + 2).tolist()), set(range(len(raw) - 4, len(raw)))


@pytest.fixture(scope="module")
def audited(tmp_path_factory, tiny_model, corrupted):
    path = corrupted[0]
    out = tmp_path_factory.mktemp("audit") / "out"
    proc = python("-m", "vacancy.audit", "--data", path, "--output-dir", out, "--encoder",
                  tiny_model, "--folds", 3)
    return out, proc


def test_audit_finds_the_injected_errors_and_points_at_input_rows(corrupted, audited):
    path, raw, swapped, twins = corrupted
    out, proc = audited
    lines = proc.stdout.strip().splitlines()
    assert lines[-2].startswith(f"audit directory: {out} (issues.csv, summary.json, report.md")
    assert lines[-1].startswith("issues: ") and lines[-1].endswith(f"{out}/issues.csv")
    issues = pd.read_csv(out / "issues.csv", keep_default_na=False)
    assert list(issues.columns) == ["row", "title", "given", "suggested", "quality", "kind",
                                    "group", "match", "looks_wrong", "looks_missing"]
    assert issues["row"].dtype == np.int64 and set(issues["kind"]) <= {"conflict", "suspect",
                                                                       "both"}
    # `row` is pandas' position in the input: title and areas are those of that row
    assert (raw["title"].to_numpy()[issues["row"]] == issues["title"]).all()
    given = [" ".join(sorted(set(a.split()))) for a in raw["area"].to_numpy()[issues["row"]]]
    assert given == issues["given"].tolist()
    suspects = issues[issues["kind"] != "conflict"]
    found = swapped & set(suspects["row"])
    assert len(found) >= 0.6 * len(swapped), (len(found), len(suspects))
    assert len(set(suspects["row"][:len(swapped)]) & swapped) >= 0.5 * len(swapped)
    # every member of each repeated title's group is listed as a conflict, with its twin
    conflicts = issues[issues["kind"] != "suspect"]
    for row in twins:
        title = raw.at[row, "title"]
        members = set(raw.index[raw["title"] == title])
        assert members <= set(conflicts["row"]), title
        assert conflicts.loc[conflicts["row"] == row, "match"].item() == "same title"
    for _, group in conflicts.groupby("group"):  # none invented: each holds an injected row
        assert set(group["row"]) & (swapped | twins), group
    assert (issues["quality"].dropna().diff().dropna() >= 0).all()  # worst first


def test_audit_summary_report_and_plot(audited):
    out, _ = audited
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 800 + 4 and summary["conflicts"]["same_title_groups"] >= 4
    assert 0 < summary["health_score"] < 1 and summary["suspects"]["rows"] > 0
    assert {a["area"] for a in summary["per_area"]} >= {"admin", "coord", "assistant"}
    assert set(summary["weights"]) == {"tfidf", "knn"}
    assert summary["issues"]["rows"] == sum(summary["issues"][k]
                                            for k in ("conflict", "suspect", "both"))
    report = (out / "report.md").read_text()
    positions = [report.index(section) for section in REPORT_SECTIONS]
    assert positions == sorted(positions)
    assert "| area | rows | looks wrong | estimated noise | looks missing |" in report
    assert (out / "noise_per_area.png").read_bytes()[:4] == b"\x89PNG"
    assert "suspects: fold 3/3" in (out / "audit.log").read_text()


def run_main(capsys, *argv) -> tuple[int, str, str]:
    code = audit.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_bad_input_is_one_line(capsys, tmp_path, small_csv):
    out = tmp_path / "out"
    code, _, err = run_main(capsys, "--data", tmp_path / "nope.csv", "--output-dir", out,
                            "--knn", 0)
    assert code == 2 and err == f"error: {tmp_path / 'nope.csv'}: no such file\n"
    no_area = tmp_path / "no_area.csv"
    no_area.write_text("title,areas\nJava Developer,programmer\n")
    code, _, err = run_main(capsys, "--data", no_area, "--output-dir", out, "--knn", 0)
    assert code == 2 and err.startswith(f"error: {no_area}: missing column(s) area")
    assert len(err.splitlines()) == 1
    code, _, err = run_main(capsys, "--data", small_csv, "--output-dir", out, "--encoder",
                            tmp_path / "no_model")
    assert code == 2 and err == f"error: --encoder {tmp_path / 'no_model'}: no such directory\n"
    code, _, err = run_main(capsys, "--data", small_csv, "--output-dir", out, "--encoder",
                            tmp_path)
    assert code == 2 and "not a saved model (no config.json)" in err
    two = tmp_path / "two.csv"
    two.write_text("title,area\nJava Developer,programmer\nData Analyst,analyst\n")
    code, _, err = run_main(capsys, "--data", two, "--output-dir", out, "--knn", 0)
    assert code == 2 and err.startswith("error: --folds 5:") and "group(s)" in err


def test_one_area_and_areas_with_one_row(capsys, tmp_path):
    single = tmp_path / "single.csv"
    pd.DataFrame({"title": [f"developer {i}" for i in range(30)] + ["developer 1"],
                  "area": "programmer"}).to_csv(single, index=False)
    code, out, _ = run_main(capsys, "--data", single, "--output-dir", tmp_path / "a", "--knn", 0)
    assert code == 0 and "warning:" in out and "no suspects to find" in out
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["health_score"] is None and summary["issues"]["rows"] == 0
    assert "Not estimated (a single area)." in (tmp_path / "a" / "report.md").read_text()

    rare = tmp_path / "rare.csv"
    titles = [f"java developer {i}" for i in range(20)] + [f"data analyst {i}" for i in range(20)]
    areas = ["programmer"] * 20 + ["analyst"] * 20 + ["hr"]
    pd.DataFrame({"title": titles + ["chief happiness officer"], "area": areas}).to_csv(
        rare, index=False)
    code, out, err = run_main(capsys, "--data", rare, "--output-dir", tmp_path / "b", "--knn",
                              0, "--folds", 3)
    assert code == 0 and "1 area(s) have a single row (hr)" in out and not err
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert ("hr", 1) in [(a["area"], a["rows"]) for a in summary["per_area"]]
