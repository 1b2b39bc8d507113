"""Titles that contradict each other: the same title, or the same words, with different areas.

If a title's areas followed from its words alone, two rows made of the same words would carry the
same label set. Where they do not, at least one of them is labelled differently from the others:
no model can be right on both, and the user should decide. Two rows are in one group when their
cleaned titles have the same `words()` key (the same set of words, a plural "s" dropped), which
takes in the titles identical after cleaning; each row also says whether it disagrees with a row
of the very same cleaned title.
"""
from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pandas as pd

# \w, not [a-z0-9]: titles in Cyrillic (or any script) are words too, not an empty key
_WORD = re.compile(r"\w+")


def words(title: str) -> str:
    """The key of a title's group: its distinct words, sorted, lower case, with a plural `s`
    dropped from words longer than 3 letters ("QA Specialists" -> "qa specialist")."""
    found = (w[:-1] if w.endswith("s") and len(w) > 3 else w
             for w in _WORD.findall(str(title).lower()))
    return " ".join(sorted(set(found))) or str(title)


def label_key(labels) -> str:
    return " ".join(sorted(labels))


def find_conflicts(titles: list[str], label_lists: list) -> pd.DataFrame:
    """The rows of every group whose label sets differ, one row each: `index` (position in
    `titles`), `group` (0, 1, ... in the order the groups first occur), `match` ("same title" when
    the row disagrees with a row of the same cleaned title, else "same words"), `labels` (its set
    as a string), `majority` (the group's most common set; ties go to the first in sorted
    order) and `disagrees` (its set is not the majority's)."""
    frame = pd.DataFrame({"title": list(titles), "labels": [label_key(x) for x in label_lists]})
    frame["key"] = _keys(frame["title"])
    columns = ["index", "group", "match", "labels", "majority", "disagrees"]
    sets_per_key = frame.groupby("key", sort=False)["labels"].nunique()
    mixed = frame[frame["key"].isin(sets_per_key.index[sets_per_key > 1])]
    if mixed.empty:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            columns, ("int64", "int64", "str", "str", "str", "bool"))})
    sets_per_title = mixed.groupby("title", sort=False)["labels"].nunique()
    majority = {key: _majority(sets) for key, sets in mixed.groupby("key", sort=False)["labels"]}
    group = {key: i for i, key in enumerate(pd.unique(mixed["key"]))}
    out = pd.DataFrame({
        "index": mixed.index.to_numpy(np.int64),
        "group": mixed["key"].map(group).to_numpy(np.int64),
        "match": np.where(mixed["title"].map(sets_per_title).to_numpy() > 1, "same title",
                          "same words"),
        "labels": mixed["labels"].to_numpy(),
        "majority": mixed["key"].map(majority).to_numpy(),
    })
    out["disagrees"] = out["labels"] != out["majority"]
    return out.sort_values(["group", "index"], kind="stable").reset_index(drop=True)


def _majority(sets: pd.Series) -> str:
    counts = Counter(sets)
    return min(counts, key=lambda s: (-counts[s], s))


def _keys(titles: pd.Series) -> np.ndarray:
    """words() of every title, computed once per distinct title (a job board repeats them)."""
    codes, distinct = pd.factorize(titles, use_na_sentinel=False)
    return np.asarray([words(t) for t in distinct], dtype=object)[codes]


def describe_groups(conflicts: pd.DataFrame, titles: list[str]) -> list[dict]:
    """One entry per group: its titles (distinct, as cleaned), every label set with its count,
    the majority set, how many rows disagree with it, and whether some title disagrees with
    itself."""
    groups = []
    for group, rows in conflicts.groupby("group", sort=True):
        counts = rows["labels"].value_counts()
        groups.append({
            "group": int(group),
            "titles": list(dict.fromkeys(titles[i] for i in rows["index"])),
            "label_sets": {s: int(counts[s]) for s in sorted(counts.index,
                                                             key=lambda s: (-counts[s], s))},
            "majority": rows["majority"].iloc[0],
            "rows": len(rows),
            "disagreeing": int(rows["disagrees"].sum()),
            "same_title": bool((rows["match"] == "same title").any()),
        })
    return groups
