"""The decision rule of a run: thresholds, the at-least-one fallback, early stopping, and the mix
with the TF-IDF model and the kNN part (unit tests, then one real training run that saves and
reuses the mix)."""
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from conftest import TINY_RUN, flags, python
import vacancy.ensemble
from vacancy.ensemble import (Neighbours, TfidfModel, build_classifier, decide, load_decision,
                              mix, tune_weights, val_score)
from vacancy.evaluate import evaluate_checkpoint
from vacancy.inference import encode, load_tagger, predict_probs
from vacancy.metrics import (choose_thresholds, f1_counts, global_threshold, micro_f1_at,
                             predict_labels, tune_thresholds)
from vacancy.trainer import RunState, patience_ran_out

TITLES = ["senior java developer", "java backend engineer", "python developer",
          "data engineer", "big data engineer", "etl developer", "ux designer", "web designer",
          "graphic designer", "security engineer", "pentester", "soc analyst"] * 3
LABELS = [[1, 0, 0, 0]] * 3 + [[0, 1, 0, 0]] * 3 + [[0, 0, 1, 0]] * 3 + [[0, 0, 0, 1]] * 3


def test_tfidf_model_is_the_pipeline_and_round_trips_without_pickle(tmp_path):
    targets = np.array(LABELS * 3, dtype=float)
    model = TfidfModel.fit(TITLES, targets)
    reference = build_classifier().fit(TITLES, targets)
    new = ["java data developer", "designer of security", "zzz"]
    np.testing.assert_allclose(model.logits(new), reference.decision_function(new), atol=1e-5)
    model.save(tmp_path / "tfidf")
    assert sorted(p.name for p in (tmp_path / "tfidf").iterdir()) == \
        ["vectorizers.json", "weights.safetensors"]
    np.testing.assert_allclose(TfidfModel.load(tmp_path / "tfidf").logits(new),
                               model.logits(new), atol=1e-6)


def test_tfidf_model_fits_on_a_sample_of_large_train_sets():
    targets = np.array(LABELS * 3, dtype=float)
    model = TfidfModel.fit(TITLES, targets, max_titles=20)
    assert model.coef.shape[0] == 4  # still one row per label
    assert np.argmax(model.logits(["java developer"])) == 0


def test_tfidf_model_fits_when_joblib_maps_the_data_to_its_workers():
    # joblib memory-maps arrays over 1 MB for its worker processes: the 5k-title O*NET sample
    # is enough; here every array is, so the small set goes the same way
    joblib = pytest.importorskip("joblib")
    targets = np.array(LABELS * 3, dtype=float)
    with joblib.parallel_config(max_nbytes=1, n_jobs=2):
        model = TfidfModel.fit(TITLES, targets)
    assert np.argmax(model.logits(["java developer"])) == 0


def noisy_scores(rng, n=400, labels=6, parts=2):
    targets = (rng.random((n, labels)) < 0.15).astype(float)
    targets[np.arange(n), rng.integers(0, labels, n)] = 1  # every title has an area
    return targets, *(np.clip(targets * 0.45 + rng.random((n, labels)) * 0.6, 0, 1)
                      for _ in range(parts))


@pytest.mark.parametrize("n_parts", [2, 3])
def test_the_mix_is_never_worse_than_its_best_part_on_val(n_parts):
    rng = np.random.default_rng(0)
    for _ in range(3):
        targets, *probs = noisy_scores(rng, parts=n_parts)
        parts = dict(zip(["transformer", "tfidf", "knn"], probs))
        for policy in ("shrunk", "0.5"):
            weights, scores = tune_weights(parts, targets, policy, at_least_one=True)
            assert len(scores) == {2: 11, 3: 66}[n_parts]
            assert sum(weights.values()) == pytest.approx(1)
            alone = [val_score(p, targets, policy, True) for p in parts.values()]
            for i, score in enumerate(alone):
                assert scores[tuple(float(i == j) for j in range(n_parts))] == \
                    pytest.approx(score)
            assert scores[tuple(weights.values())] >= max(alone)
            # independent noisy models: averaging beats each (the reason for the mix)
            assert all(0 < w < 1 for w in weights.values())
    a, b = probs[:2]
    np.testing.assert_allclose(mix({"a": a, "b": b}, {"a": 0.3, "b": 0.7}), 0.3 * a + 0.7 * b)


def test_the_knn_part_scores_a_title_by_its_closest_train_titles(tmp_path):
    rng = np.random.default_rng(0)
    keys = rng.normal(size=(50, 8))
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    targets = (rng.random((50, 3)) < 0.4).astype(np.uint8)
    knn = Neighbours(keys, targets, k=1)
    queries = knn.vectors[[7, 3]]  # a train title finds itself
    np.testing.assert_array_equal(knn.probs(queries), targets[[7, 3]])
    # k > 1: a similarity-weighted share of the k closest titles' labels, in [0, 1]
    knn = Neighbours(keys, targets, k=5)
    probs = knn.probs(queries + 0.01)
    assert probs.shape == (2, 3) and (probs >= 0).all() and (probs <= 1 + 1e-6).all()
    sims = knn.vectors @ (queries[0] + 0.01)
    top = np.argsort(-sims)[:5]
    w = np.exp((sims[top] - 1) / Neighbours.TEMPERATURE)
    np.testing.assert_allclose(probs[0], (w / w.sum()) @ targets[top], rtol=1e-5)
    # half precision on disk and in memory: the loaded part scores exactly as the saved one
    knn.save(tmp_path / "knn")
    assert sorted(p.name for p in (tmp_path / "knn").iterdir()) == \
        ["knn.json", "train.safetensors"]
    loaded = Neighbours.load(tmp_path / "knn")
    np.testing.assert_array_equal(loaded.probs(queries), knn.probs(queries))
    assert Neighbours(keys[:3], targets[:3], k=10).k == 3


@pytest.mark.parametrize("m, k", [(5000, 10), (50, 10), (10, 10), (3000, 1)])
def test_the_closest_columns_are_a_full_selection_with_ties_to_the_lowest(m, k):
    rng = np.random.default_rng(m)
    sims = rng.normal(size=(40, m)).astype(np.float32)
    sims[:, 7::97] = sims[:, [7]]  # ties: whole groups of equal similarities, at and across k
    sims[3] = 0.5
    top = vacancy.ensemble.closest(sims, k)
    expected = np.argsort(-sims, axis=1, kind="stable")[:, :k]  # stable: ties stay in order
    np.testing.assert_array_equal(np.sort(top, axis=1), np.sort(expected, axis=1))
    np.testing.assert_array_equal(top[3], np.arange(k))


@pytest.mark.parametrize("refit, cap, added", [("on", 100_000, 12), ("off", 100_000, 0),
                                               ("on", 40, 4), ("on", 36, 0)])
def test_refit_adds_val_titles_to_the_tfidf_part_within_the_cap(monkeypatch, refit, cap, added):
    """decide() without a training run (no kNN part: it needs an encoder): val's titles join the
    TF-IDF fit after the weights are picked, up to the cap on titles in all."""
    monkeypatch.setattr(vacancy.ensemble, "MAX_FIT_TITLES", cap)
    targets = np.array(LABELS * 3, np.float32)
    val = [f"zebra {t}" for t in TITLES[:12]]  # a word that only val has
    data = SimpleNamespace(targets={"train": targets, "val": targets[:12], "test": targets[:12]},
                           test=pd.DataFrame({"title": TITLES[:12]}),
                           titles=lambda: {"train_index": list(range(36)), "train": TITLES,
                                           "val": val})
    config = SimpleNamespace(threshold_policy="0.5", at_least_one=True, ensemble="on", knn=0,
                             refit=refit, seed=0)
    probs = np.random.default_rng(0).random((12, 4))
    decision = decide(config, data, probs, probs, best=None, device=None)
    assert decision.summary["refit_val_titles"] == added
    assert ("zebra" in decision.tfidf.vectorizers[0].vocabulary_) == bool(added)
    assert ("(--refit on)" in decision.table) == bool(added)


def test_a_best_dir_of_the_two_part_mix_still_loads(tmp_path):
    """best/ written before the kNN part: one transformer weight beside the TF-IDF model."""
    TfidfModel.fit(TITLES, np.array(LABELS * 3, dtype=float)).save(tmp_path / "tfidf")
    (tmp_path / "decision.json").write_text(json.dumps(
        {"at_least_one": True, "transformer_weight": 0.4, "tfidf": "tfidf"}))
    at_least_one, weights, tfidf, neighbours = load_decision(tmp_path)
    assert at_least_one and weights == {"transformer": 0.4, "tfidf": pytest.approx(0.6)}
    assert isinstance(tfidf, TfidfModel) and neighbours is None
    (tmp_path / "decision.json").unlink()  # older still: the transformer alone, no fallback
    assert load_decision(tmp_path) == (False, {"transformer": 1.0}, None, None)


def test_threshold_policies():
    rng = np.random.default_rng(1)
    targets, probs, _ = noisy_scores(rng)
    targets[:, 5] = 0
    targets[:2, 5] = 1  # a label with two val positives
    t_global = global_threshold(probs, targets)
    grid = np.linspace(0, 1, 501)
    assert micro_f1_at(probs, targets, np.full(6, t_global)) >= \
        max(micro_f1_at(probs, targets, np.full(6, g)) for g in grid) - 1e-12
    own = tune_thresholds(probs, targets, min_support=1)
    shrunk = choose_thresholds(probs, targets, "shrunk")
    lo, hi = np.minimum(own, t_global), np.maximum(own, t_global)
    assert np.all((lo - 1e-12 <= shrunk) & (shrunk <= hi + 1e-12))
    # few positives: close to the global cut; many: close to its own
    assert abs(shrunk[5] - t_global) < 0.1 * abs(own[5] - t_global) + 1e-9
    assert np.all(choose_thresholds(probs, targets, "0.35") == 0.35)
    assert np.all(choose_thresholds(probs, targets, "per-label") == tune_thresholds(probs, targets))


def test_at_least_one_predicts_the_most_probable_label_of_empty_rows():
    probs = np.array([[0.2, 0.4, 0.1], [0.9, 0.6, 0.1], [0.1, 0.1, 0.3]])
    t = np.full(3, 0.5)
    assert predict_labels(probs, t).tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert predict_labels(probs, t, at_least_one=True).tolist() == \
        [[0, 1, 0], [1, 1, 0], [0, 0, 1]]
    from sklearn.metrics import f1_score
    y = np.array([[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    pred = predict_labels(probs, t, True)
    assert f1_counts(pred, y) == (pytest.approx(f1_score(y, pred, average="micro")),
                                  pytest.approx(f1_score(y, pred, average="macro",
                                                         zero_division=0)))


@pytest.mark.parametrize("epoch,best,expected", [
    (3, 1, False),  # epoch 1 frozen: only epochs 2 and 3 unfrozen since then, under patience 3
    (4, 1, True),
    (4, 3, False),
    (6, 2, False),  # no epoch left to skip
])
def test_patience_counts_unfrozen_epochs_since_the_best(epoch, best, expected):
    config = SimpleNamespace(patience=3, freeze_epochs=1, epochs=6)
    assert patience_ran_out(config, RunState(epoch=epoch, best_epoch=best)) is expected
    assert not patience_ran_out(SimpleNamespace(patience=0, freeze_epochs=1, epochs=6),
                                RunState(epoch=epoch, best_epoch=best))


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory, tiny_model, small_csv):
    """One real training run with the default --ensemble on."""
    out = tmp_path_factory.mktemp("mixed") / "run"
    python("train_ddp.py", *flags(data=small_csv, model=tiny_model, output_dir=out,
                                  **{**TINY_RUN, "epochs": 2, "ensemble": "on"}))
    return out


def test_the_run_reports_each_part_and_saves_the_mix(mixed_run, small_csv):
    metrics = json.loads((mixed_run / "metrics.json").read_text())
    best = mixed_run / "best"
    decision = json.loads((best / "decision.json").read_text())
    weights = decision["weights"]
    assert list(weights) == ["transformer", "tfidf", "knn"]
    assert weights == {part: metrics[f"{part}_weight"] for part in weights}
    assert sum(weights.values()) == pytest.approx(1)
    assert decision["at_least_one"] is True and (best / "tfidf" / "weights.safetensors").exists()
    assert (best / "knn" / "train.safetensors").exists()
    assert not list(best.rglob("*.pkl")) and not list(best.rglob("*.joblib"))
    val = {part: (metrics[f"{part}_val_micro_f1"] + metrics[f"{part}_val_macro_f1"]) / 2
           for part in ("transformer", "tfidf", "knn", "mix")}
    assert val["mix"] >= max(val["transformer"], val["tfidf"], val["knn"]) - 1e-12
    assert metrics["micro_f1"] == pytest.approx(metrics["mix_test_micro_f1"])
    report = (mixed_run / "report.txt").read_text()
    winner = "the mix" if max(weights.values()) < 1 else \
        f"the {max(weights, key=weights.get)} part alone"
    lines = report.splitlines()
    assert f"On val, {winner} scored best; best/ predicts with it (weights transformer " \
        f"{weights['transformer']:.1f}, tfidf {weights['tfidf']:.1f}, knn " \
        f"{weights['knn']:.1f})." in lines
    # --refit on: once val has picked the weights, the kNN part remembers val's titles too
    assert metrics["refit_val_titles"] == metrics["n_val"] > 0
    assert (f"For test and best/, the tfidf and knn parts were fitted again on "
            f"{metrics['n_train']} train + {metrics['n_val']} val titles (--refit on).") in lines
    assert len(Neighbours.load(best / "knn").vectors) == metrics["n_train"] + metrics["n_val"]

    # best/ alone reproduces the run's test metrics in one process, mix included
    single, _ = evaluate_checkpoint(best, str(small_csv))
    for key in ("micro_f1", "macro_f1", "samples_f1"):
        assert single[key] == pytest.approx(metrics[key], abs=1e-9)

    # and the saved probabilities are the weighted mean of the three parts'
    saved = pd.read_csv(mixed_run / "test_predictions.csv", keep_default_na=False)
    tagger = load_tagger(best)
    labels = tagger.labels
    titles = saved["title"].tolist()
    probs, vectors = encode(tagger.model, tagger.tokenizer, titles, vectors=True)
    np.testing.assert_allclose(probs, predict_probs(tagger.model, tagger.tokenizer, titles))
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, rtol=1e-5)
    parts = {"transformer": probs, "tfidf": TfidfModel.load(best / "tfidf").probs(titles),
             "knn": Neighbours.load(best / "knn").probs(vectors)}
    expected = mix(parts, weights)
    np.testing.assert_allclose(saved[[f"p_{x}" for x in labels]].to_numpy(), expected, atol=1e-5)
    alone = load_tagger(best, ensemble=False)
    assert alone.tfidf is None and alone.neighbours is None
    np.testing.assert_allclose(alone.probs(titles[:5]),
                               predict_probs(tagger.model, tagger.tokenizer, titles[:5]))


def test_predict_cli_uses_the_mix_unless_told_not_to(mixed_run, capsys):
    from vacancy.predict import main
    tagger = load_tagger(mixed_run / "best")
    title = "Senior Java Developer"
    alone = load_tagger(mixed_run / "best", ensemble=False)
    for setting, probs in (("on", tagger.probs([title])[0]), ("off", alone.probs([title])[0])):
        assert main(["--model", str(mixed_run), "--ensemble", setting, "--threshold", "0",
                     "--top-k", "1", title]) == 0
        line = capsys.readouterr().out.splitlines()[1].split()
        assert line[0] == tagger.labels[int(np.argmax(probs))]
        assert float(line[1]) == pytest.approx(probs.max(), abs=1e-3)
