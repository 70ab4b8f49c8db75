"""The study's summary arithmetic on hand-made runs.csv files, checked against closed forms and
NumPy: one data seed in the layout before data seeds, two data seeds pooled and apart, arms at
several selection fractions with their distractor shares, the per-seed rows behind the summary,
and the committed study tables (docs/detection_study) summarized again from their runs.csv."""

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from imagescore_det.study.summary import (
    PER_SEED_COLUMNS,
    POOLED,
    RUN_COLUMNS,
    arm_label,
    control_drift,
    detectable_note,
    drift_note,
    final_ap50,
    neighbour_sd,
    noise_note,
    per_seed,
    plot_curves,
    plot_selection_curve,
    read_runs,
    summarize,
    write_per_seed,
    write_runs,
    write_summary,
)
from imagescore_det.study.summary import main as summary_main

DOCS = Path(__file__).resolve().parent.parent / "docs" / "detection_study"
#: runs.csv before data seeds: no data_seed column.
OLD_COLUMNS = [c for c in RUN_COLUMNS if c != "data_seed"]
#: 97.5 % quantiles of Student's t with 2 and 5 degrees of freedom (tables).
T975 = {2: 4.302652729911275, 5: 2.570581835636314}

# (arm, seed, iteration, ap50): the iteration-600 rows are the shared teacher's, the last one counts.
FINAL = {
    "control": [60.0, 62.0, 61.0],
    "imagescore": [61.5, 62.5, 63.0],  # differences 1.5, 0.5, 2.0
    "random": [59.0, 62.0, 60.0],  # differences -1, 0, -1
    "oracle": [70.0, 71.0, 69.0],  # differences 10, 9, 8
}


@pytest.fixture
def runs_csv(tmp_path):
    """A runs.csv of one data seed as the study wrote it before data seeds (no data_seed column)."""
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(OLD_COLUMNS)
        for arm, values in FINAL.items():
            for seed, value in enumerate(values):
                writer.writerow([arm, seed, 600, 55.0 + seed, 30.0, "", "", "", "", ""])
                writer.writerow([arm, seed, 900, value, value / 2, "", 10, 20, 0.75, 0.5])
    return str(path)


def t_distribution_2df_upper_tail(t):
    """P(T > t) for Student's t with 2 degrees of freedom: 1/2 - t / (2 sqrt(2 + t^2))."""
    return 0.5 - t / (2 * math.sqrt(2 + t * t))


def test_delta_p_value_and_gap_closed_match_hand_computation(runs_csv):
    rows = read_runs(runs_csv)
    assert {row["data_seed"] for row in rows} == {""}  # no column: one data seed, the empty value
    summary = {row["arm"]: row for row in summarize(rows)}
    assert list(summary) == ["control", "imagescore", "random", "oracle"]  # pooled rows only
    ours = summary["imagescore"]
    assert ours["data_seed"] == POOLED and ours["seeds"] == 3 and ours["iteration"] == 900
    assert ours["ap50_mean"] == pytest.approx(62.3333333333, abs=1e-9)
    assert ours["ap50_last_mean"] == pytest.approx(62.3333333333, abs=1e-9)  # one evaluation after
    assert ours["ap50_sd"] == pytest.approx(
        math.sqrt(((61.5 - 187 / 3) ** 2 + (62.5 - 187 / 3) ** 2 + (63 - 187 / 3) ** 2) / 2)
    )
    assert ours["delta_vs_control"] == pytest.approx(4 / 3)
    # differences 1.5, 0.5, 2: mean 4/3, sd sqrt(21)/6, t = (4/3) / (sd / sqrt 3) = 8 / sqrt 7
    assert ours["p_value"] == pytest.approx(
        t_distribution_2df_upper_tail(8 / math.sqrt(7)), rel=1e-9
    )
    assert ours["p_value"] == pytest.approx(0.5 - 4 / math.sqrt(78), rel=1e-9)
    assert ours["ci95_half_width"] == pytest.approx(T975[2] * math.sqrt(21) / 6 / math.sqrt(3))
    assert ours["gap_closed"] == pytest.approx((4 / 3) / 9)
    assert summary["oracle"]["gap_closed"] == pytest.approx(1.0)
    assert (
        summary["random"]["delta_vs_control"] == pytest.approx(-2 / 3)
        and summary["random"]["p_value"] > 0.5
    )
    assert (
        math.isnan(summary["control"]["p_value"]) and summary["control"]["delta_vs_control"] == 0.0
    )
    assert math.isnan(summary["control"]["ci95_half_width"])
    assert math.isnan(ours["neighbour_sd"])  # one evaluation after the swap: no sd


def test_the_metric_ap_compares_the_arms_by_their_ap_not_their_ap50(runs_csv, tmp_path):
    """With metric "ap" every difference, p and gap comes from the AP column: here imagescore's AP
    falls behind control's while its AP50 is ahead."""
    rows = read_runs(runs_csv)
    ap_of = {"control": [30.0, 31.0, 32.0], "imagescore": [29.0, 30.5, 30.0], "oracle": [40.0] * 3}
    for row in rows:
        if row["iteration"] == 900 and row["arm"] in ap_of:
            row["ap"] = ap_of[row["arm"]][row["seed"]]
    by_ap = {row["arm"]: row for row in summarize(rows, metric="ap")}
    by_ap50 = {row["arm"]: row for row in summarize(rows)}
    ours = by_ap["imagescore"]
    assert ours["metric"] == "ap" and by_ap50["imagescore"]["metric"] == "ap50"
    assert ours["delta_vs_control"] == pytest.approx(-3.5 / 3)  # -1, -0.5, -2
    assert by_ap50["imagescore"]["delta_vs_control"] == pytest.approx(4 / 3)
    assert ours["p_value"] > 0.5 > by_ap50["imagescore"]["p_value"]
    assert ours["gap_closed"] == pytest.approx((-3.5 / 3) / 9)  # oracle's AP gap: 10, 9, 8
    assert ours["ap_mean"] == pytest.approx(89.5 / 3)
    assert ours["ap_sd"] == pytest.approx(np.std([29.0, 30.5, 30.0], ddof=1))
    assert ours["ap50_mean"] == by_ap50["imagescore"]["ap50_mean"]  # the means do not depend on it
    seeds = [r for r in per_seed(rows, metric="ap") if r["arm"] == "imagescore"]
    assert [r["delta_vs_control"] for r in seeds] == pytest.approx([-1.0, -0.5, -2.0])
    assert [r["ap"] for r in seeds] == [29.0, 30.5, 30.0]
    write_summary(summarize(rows, metric="ap"), str(tmp_path / "s.csv"), str(tmp_path / "s.md"))
    assert "is in AP (IoU 0.50:0.95)" in (tmp_path / "s.md").read_text()
    assert "±" in detectable_note(summarize(rows, metric="ap")) and " AP (" in detectable_note(
        summarize(rows, metric="ap")
    )
    with pytest.raises(ValueError, match="metric must be one of"):
        summarize(rows, metric="ap75")


def test_without_oracle_gap_closed_is_empty_and_files_are_written(runs_csv, tmp_path):
    rows = [row for row in read_runs(runs_csv) if row["arm"] != "oracle"]
    summary = summarize(rows)
    assert all(math.isnan(row["gap_closed"]) for row in summary)
    write_summary(
        summary,
        str(tmp_path / "summary.csv"),
        str(tmp_path / "summary.md"),
        command="tools/ssod_study.py ...",
    )
    with open(tmp_path / "summary.csv") as f:
        table = list(csv.DictReader(f))
    assert [r["arm"] for r in table] == ["control", "imagescore", "random"]
    assert (
        table[1]["gap_closed"] == ""
        and table[0]["p_value"] == ""
        and table[1]["delta_vs_control"] == "1.333"
        and table[1]["data_seed"] == POOLED
    )
    md = (tmp_path / "summary.md").read_text()
    assert "| imagescore |  | pooled | 3 | 900 |" in md  # no fraction column: the cell is empty
    assert "means of its last 3 evaluation(s) after the swap" in md
    assert "ap50_last_mean is the mean of the runs' last evaluation alone" in md
    plot_curves(rows, str(tmp_path / "curves.png"), swap_iter=600)
    assert (tmp_path / "curves.png").read_bytes().startswith(b"\x89PNG")


def test_one_seed_has_no_p_value_and_bad_rows_name_the_line(tmp_path):
    rows = [
        {"arm": "control", "seed": 0, "iteration": 9, "ap50": 50.0, "ap": 20.0},
        {"arm": "imagescore", "seed": 0, "iteration": 9, "ap50": 52.0, "ap": 21.0},
    ]
    ours = summarize(rows)[1]
    assert (
        ours["delta_vs_control"] == 2.0
        and math.isnan(ours["p_value"])
        and math.isnan(ours["ap50_sd"])
        and math.isnan(ours["ci95_half_width"])
    )
    path = tmp_path / "runs.csv"
    path.write_text("arm,seed,iteration,ap50,ap\ncontrol,0,9,fifty,20\n")
    with pytest.raises(ValueError, match="line 2"):
        read_runs(str(path))
    path.write_text("arm,data_seed,seed,iteration,ap50,ap\ncontrol,one,0,9,50,20\n")
    with pytest.raises(ValueError, match="line 2"):
        read_runs(str(path))


def test_control_drift_is_the_largest_move_after_the_swap(runs_csv):
    rows = read_runs(
        runs_csv
    ) + [  # seed 0's control also evaluated between the swap and the end, and before
        {"arm": "control", "seed": 0, "iteration": 300, "ap50": 20.0, "ap": 1.0},
        {"arm": "control", "seed": 0, "iteration": 750, "ap50": 52.5, "ap": 1.0},
        {"arm": "imagescore", "seed": 2, "iteration": 750, "ap50": 0.0, "ap": 1.0},
        {
            "arm": "control",
            "seed": 5,
            "iteration": 900,
            "ap50": 99.0,
            "ap": 1.0,
        },  # no evaluation at the swap
    ]
    drift = control_drift(rows, swap_iter=600)
    # swap values 55 + seed; control finals 60, 62, 61; seed 0 also dips to 52.5 (2.5 below 55) at 750
    assert drift == pytest.approx({("", 0): 5.0, ("", 1): 6.0, ("", 2): 4.0})
    assert drift_note(drift, 600).endswith("seed 0: 5.00, seed 1: 6.00, seed 2: 4.00.")
    assert control_drift(rows, swap_iter=900) == {}
    two = control_drift([dict(row, data_seed=7) for row in rows], swap_iter=600)
    assert drift_note(two, 600).endswith("data seed 7, seed 2: 4.00.")


# ------------------------------------------------------------------ two data seeds

SWAP = 600
ITERATIONS = [700, 800, 900, 1000]
#: (arm, data seed) -> per training seed 0, 1, 2: AP50 at ITERATIONS (after the teacher's 50 at 600).
CURVES = {
    ("control", 1): [[60, 61, 60, 62], [62, 63, 61, 62], [59, 60, 61, 60]],
    ("control", 2): [[70, 71, 70, 70], [68, 69, 70, 71], [72, 71, 72, 73]],
    ("imagescore", 1): [[61, 62, 63, 62], [62, 64, 63, 65], [60, 60, 61, 62]],
    ("imagescore", 2): [[70, 70, 69, 71], [69, 70, 70, 70], [71, 71, 73, 72]],
    ("oracle", 1): [[66, 68, 67, 69], [67, 69, 70, 68], [65, 66, 66, 67]],
    ("oracle", 2): [[74, 75, 76, 74], [73, 74, 73, 75], [76, 77, 76, 78]],
}


@pytest.fixture
def two_data_seeds(tmp_path):
    rows = []
    for (arm, data_seed), by_seed in CURVES.items():
        for seed, values in enumerate(by_seed):
            rows.append(dict(arm=arm, data_seed=data_seed, seed=seed, iteration=SWAP, ap50=50.0, ap=25.0))  # fmt: skip
            for iteration, value in zip(ITERATIONS, values):
                rows.append(dict(arm=arm, data_seed=data_seed, seed=seed, iteration=iteration, ap50=float(value), ap=value / 2))  # fmt: skip
    path = str(tmp_path / "runs.csv")
    write_runs(path, rows)
    return read_runs(path)


def final_of(arm, data_seed, k=3):
    """Each seed's final figure, by hand: the mean of the last k evaluations after the swap."""
    return np.array([np.mean(values[-k:]) for values in CURVES[(arm, data_seed)]])


def t_test(differences):
    """(one-sided p, 95 % half-width) of a paired mean difference, from the t statistic by hand."""
    from scipy import stats

    n = len(differences)
    se = np.std(differences, ddof=1) / math.sqrt(n)
    return float(stats.t.sf(np.mean(differences) / se, n - 1)), T975[n - 1] * se


def test_a_runs_final_figure_is_the_mean_of_its_last_evaluations_after_the_swap(two_data_seeds):
    final = final_ap50(two_data_seeds, swap_iter=SWAP, final_evals=3)
    run = final["control"][(1, 0)]  # 61, 60, 62 after 60
    assert run["ap50"] == pytest.approx(61.0) and run["ap50_last"] == 62.0 and run["evals"] == 3
    assert run["ap"] == pytest.approx(30.5) and run["iteration"] == 1000
    assert (
        final_ap50(two_data_seeds, final_evals=3) == final
    )  # the swap: each run's first evaluation
    assert (
        final_ap50(two_data_seeds, swap_iter=SWAP, final_evals=1)["control"][(1, 0)]["ap50"] == 62.0
    )
    # Only evaluations after the swap count, however many are asked for; none after: the last one.
    assert final_ap50(two_data_seeds, swap_iter=SWAP, final_evals=9)["control"][(1, 0)]["ap50"] == pytest.approx(60.75)  # fmt: skip
    late = final_ap50(two_data_seeds, swap_iter=800, final_evals=3)["control"][(1, 0)]
    assert late["ap50"] == pytest.approx(61.0) and late["evals"] == 2
    after_all = final_ap50(two_data_seeds, swap_iter=1000)["control"][(1, 0)]
    assert after_all["ap50"] == 62.0 and after_all["evals"] == 1
    with pytest.raises(ValueError, match="final_evals"):
        final_ap50(two_data_seeds, final_evals=0)


def test_pooled_and_per_data_seed_rows_on_two_data_seeds(two_data_seeds):
    summary = summarize(two_data_seeds, swap_iter=SWAP, final_evals=3)
    assert [(row["data_seed"], row["arm"]) for row in summary] == [
        (label, arm) for label in (POOLED, 1, 2) for arm in ("control", "imagescore", "oracle")
    ]
    row = {(r["data_seed"], r["arm"]): r for r in summary}

    control = {d: final_of("control", d) for d in (1, 2)}
    ours = {d: final_of("imagescore", d) for d in (1, 2)}
    oracle = {d: final_of("oracle", d) for d in (1, 2)}
    pooled_differences = np.concatenate([ours[1] - control[1], ours[2] - control[2]])
    # control / imagescore: data seed 1: 61 / 62.33, 62 / 64, 60.33 / 61; data seed 2: 70.33 / 70, 70 / 70, 72 / 72
    assert pooled_differences == pytest.approx([4 / 3, 2, 2 / 3, -1 / 3, 0, 0])

    pooled = row[(POOLED, "imagescore")]
    p, half_width = t_test(pooled_differences)
    assert pooled["seeds"] == 6 and pooled["iteration"] == 1000
    assert pooled["delta_vs_control"] == pytest.approx(11 / 18)
    assert pooled["p_value"] == pytest.approx(p, rel=1e-9)
    assert pooled["ci95_half_width"] == pytest.approx(half_width, rel=1e-9)
    assert pooled["ap50_mean"] == pytest.approx(np.mean(np.concatenate([ours[1], ours[2]])))
    assert pooled["ap50_sd"] == pytest.approx(np.std(np.concatenate([ours[1], ours[2]]), ddof=1))
    last = [v[-1] for d in (1, 2) for v in CURVES[("imagescore", d)]]
    assert pooled["ap50_last_mean"] == pytest.approx(np.mean(last))  # 62, 65, 62, 71, 70, 72
    assert pooled["ap_mean"] == pytest.approx(pooled["ap50_mean"] / 2)
    oracle_gap = np.mean(np.concatenate([oracle[1] - control[1], oracle[2] - control[2]]))
    assert pooled["gap_closed"] == pytest.approx((11 / 18) / oracle_gap)
    assert row[(POOLED, "oracle")]["gap_closed"] == pytest.approx(1.0)

    for d in (1, 2):  # each data seed's row: its own three pairs and its own oracle gap
        own = row[(d, "imagescore")]
        differences = ours[d] - control[d]
        assert own["seeds"] == 3 and own["delta_vs_control"] == pytest.approx(np.mean(differences))
        assert own["ap50_mean"] == pytest.approx(np.mean(ours[d]))
        assert own["gap_closed"] == pytest.approx(
            np.mean(differences) / np.mean(oracle[d] - control[d])
        )
        assert row[(d, "control")]["ap50_mean"] == pytest.approx(np.mean(control[d]))
        p, half_width_d = t_test(differences)
        assert own["p_value"] == pytest.approx(p, rel=1e-9)
        assert own["ci95_half_width"] == pytest.approx(half_width_d, rel=1e-9)
    assert row[(2, "imagescore")]["p_value"] > 0.5  # a mean difference of -1/9 on data seed 2

    # Neighbouring checkpoints: the sd of a run's four evaluations after the swap, mean over runs.
    noise = neighbour_sd(two_data_seeds, SWAP)
    assert noise[("control", 1, 0)] == pytest.approx(np.std([60, 61, 60, 62], ddof=1))
    for d in (1, 2):
        expected = np.mean([np.std(v, ddof=1) for v in CURVES[("control", d)]])
        assert row[(d, "control")]["neighbour_sd"] == pytest.approx(expected)
    note = noise_note(two_data_seeds, SWAP)
    expected = np.mean([np.std(v, ddof=1) for v in CURVES[("control", 1)]])
    assert "data seed 1: control %.4g, every arm" % expected in note and "data seed 2:" in note

    text = detectable_note(summary)
    assert text.startswith("This study can detect differences of about ±%.2f AP50" % half_width)
    assert "imagescore ±%.2f over 6" % half_width in text and "oracle ±" in text


def test_two_data_seeds_are_written_with_their_column(two_data_seeds, tmp_path):
    write_runs(str(tmp_path / "again.csv"), two_data_seeds)
    with open(tmp_path / "again.csv") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == RUN_COLUMNS and {r["data_seed"] for r in table} == {"1", "2"}
    summary = summarize(two_data_seeds, swap_iter=SWAP)
    write_summary(
        summary, str(tmp_path / "summary.csv"), str(tmp_path / "summary.md"), final_evals=3
    )
    with open(tmp_path / "summary.csv") as f:
        written = list(csv.DictReader(f))
    assert [r["data_seed"] for r in written] == [POOLED] * 3 + ["1"] * 3 + ["2"] * 3
    assert written[1]["seeds"] == "6" and written[4]["seeds"] == "3"


# ------------------------------------------------------------------ fractions and distractors

#: (arm, fraction) -> per training seed 0, 1, 2: (final AP50, distractors among its 10 kept images).
AT_FRACTIONS = {
    ("control", ""): [(60.0, None), (62.0, None), (61.0, None)],
    ("imagescore", "0.1"): [(63.0, 1), (62.0, 2), (64.0, 0)],
    ("imagescore", "0.3"): [(61.0, 3), (64.0, 3), (63.0, 4)],
    ("random", "0.1"): [(61.0, 5), (61.5, 4), (62.0, 6)],
    ("random", "0.3"): [(60.5, 5), (62.0, 5), (62.0, 5)],
    ("all", ""): [(62.0, 5), (63.0, 5), (61.5, 5)],
}


@pytest.fixture
def at_fractions(tmp_path):
    """A hand-written runs.csv of arms at two fractions: the teacher's row at 600, the arm's at 900."""
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["arm", "fraction", "seed", "iteration", "ap50", "ap", "images", "distractors_kept"]
        )
        for (arm, fraction), runs in AT_FRACTIONS.items():
            for seed, (ap50, distractors) in enumerate(runs):
                kept = ["", ""] if distractors is None else [10, distractors / 10]
                writer.writerow([arm, fraction, seed, 600, 55.0, 25.0, "", ""])
                writer.writerow([arm, fraction, seed, 900, ap50, ap50 / 2, *kept])
    return read_runs(str(path))


def finals(arm, fraction):
    return np.array([ap50 for ap50, _ in AT_FRACTIONS[(arm, fraction)]])


def test_deltas_vs_random_and_all_pair_each_fraction_and_count_distractors(at_fractions, tmp_path):
    summary = summarize(at_fractions, swap_iter=600)
    assert [(row["arm"], row["fraction"]) for row in summary] == [
        ("control", ""), ("imagescore", 0.1), ("imagescore", 0.3), ("random", 0.1), ("random", 0.3), ("all", "")
    ]  # fmt: skip
    row = {arm_label(r["arm"], r["fraction"]): r for r in summary}
    assert list(row) == ["control", "imagescore@0.1", "imagescore@0.3", "random@0.1", "random@0.3", "all"]  # fmt: skip
    for fraction in ("0.1", "0.3"):  # each fraction against random at the same fraction, and all
        ours = row["imagescore@%s" % fraction]
        for reference, column in (
            (finals("random", fraction), "random"),
            (finals("all", ""), "all"),
        ):
            differences = finals("imagescore", fraction) - reference
            assert ours["delta_vs_" + column] == pytest.approx(np.mean(differences))
            assert ours["p_vs_" + column] == pytest.approx(t_test(differences)[0], rel=1e-9)
        differences = finals("imagescore", fraction) - finals("control", "")
        assert ours["delta_vs_control"] == pytest.approx(np.mean(differences))
        assert ours["p_value"] == pytest.approx(t_test(differences)[0], rel=1e-9)
    # imagescore@0.1 - random@0.1 = 2, 0.5, 2; imagescore@0.1 - all = 1, -1, 2.5
    assert row["imagescore@0.1"]["delta_vs_random"] == pytest.approx(1.5)
    assert row["imagescore@0.1"]["delta_vs_all"] == pytest.approx(2.5 / 3)
    assert row["random@0.1"]["delta_vs_random"] == 0.0 and math.isnan(
        row["random@0.1"]["p_vs_random"]
    )
    assert row["all"]["delta_vs_all"] == 0.0 and math.isnan(row["all"]["p_vs_all"])
    # random ran at two fractions: a row without one has no random to be paired with
    assert math.isnan(row["all"]["delta_vs_random"]) and math.isnan(row["control"]["p_vs_random"])
    assert row["control"]["delta_vs_all"] == pytest.approx(-np.mean(finals("all", "") - finals("control", "")))  # fmt: skip
    # the share of kept images that are distractors, mean over the runs; none where nothing is pseudo-labelled
    assert row["imagescore@0.1"]["distractors_kept"] == pytest.approx(0.1)
    assert row["imagescore@0.3"]["distractors_kept"] == pytest.approx(1 / 3)
    assert row["random@0.1"]["distractors_kept"] == pytest.approx(0.5)
    assert math.isnan(row["control"]["distractors_kept"])

    one_fraction = summarize([r for r in at_fractions if r["fraction"] != 0.1], swap_iter=600)
    alone = {arm_label(r["arm"], r["fraction"]): r for r in one_fraction}
    # With random at one fraction, all and control are compared with it: all - random@0.3 = 1.5, 1, -0.5
    assert alone["all"]["delta_vs_random"] == pytest.approx(2 / 3)
    assert alone["all"]["p_vs_random"] == pytest.approx(t_test(np.array([1.5, 1.0, -0.5]))[0], rel=1e-9)  # fmt: skip

    write_summary(summary, str(tmp_path / "summary.csv"), str(tmp_path / "summary.md"))
    with open(tmp_path / "summary.csv") as f:
        written = list(csv.DictReader(f))
    assert [(r["arm"], r["fraction"]) for r in written][:3] == [("control", ""), ("imagescore", "0.1"), ("imagescore", "0.3")]  # fmt: skip
    assert written[1]["delta_vs_random"] == "1.5" and written[1]["distractors_kept"] == "0.1"
    assert written[0]["distractors_kept"] == "" and written[0]["p_vs_random"] == ""
    assert "distractors_kept is the mean over the runs" in (tmp_path / "summary.md").read_text()
    plot_selection_curve(summary, str(tmp_path / "selection_curve.png"))
    assert (tmp_path / "selection_curve.png").read_bytes().startswith(b"\x89PNG")


def test_runs_without_fraction_or_kinds_read_as_before(runs_csv):
    rows = read_runs(runs_csv)
    assert {row["fraction"] for row in rows} == {""} and arm_label("imagescore", "") == "imagescore"
    summary = summarize(rows)
    assert all(row["fraction"] == "" and math.isnan(row["distractors_kept"]) for row in summary)
    ours = next(row for row in summary if row["arm"] == "imagescore")
    assert ours["delta_vs_random"] == pytest.approx(2.0)  # 1.5 - (-1), 0.5 - 0, 2 - (-1): mean 2
    assert math.isnan(ours["delta_vs_all"])  # no all arm


@pytest.mark.parametrize("folder", ["data_seed0", "data_seed1"])
def test_the_committed_study_tables_summarize_again_from_their_runs_csv(folder):
    """The committed runs.csv files (no data_seed column) read as one data seed; with the last
    evaluation as the final figure (final_evals 1) they give the committed summary.csv again."""
    rows = read_runs(str(DOCS / folder / "runs.csv"))
    with open(DOCS / folder / "summary.csv") as f:
        committed = {row["arm"]: row for row in csv.DictReader(f)}
    summary = summarize(rows, swap_iter=2400, final_evals=1)
    assert [row["arm"] for row in summary] == list(committed)
    for row in summary:
        for column in ("ap50_mean", "ap50_sd", "ap_mean", "delta_vs_control", "p_value", "gap_closed"):  # fmt: skip
            if committed[row["arm"]][column] == "":
                assert math.isnan(row[column]), (row["arm"], column)
            else:
                expected = float(committed[row["arm"]][column])
                assert row[column] == pytest.approx(expected, rel=1e-3, abs=1e-9), (row["arm"], column)  # fmt: skip
    # The default figure (the mean of the last 3 evaluations after the swap) is defined for every arm.
    assert all(math.isfinite(row["ap50_mean"]) for row in summarize(rows, swap_iter=2400))


# ------------------------------------------------------------------ per seed


def test_per_seed_rows_are_each_runs_figures_and_paired_differences(runs_csv):
    rows = per_seed(read_runs(runs_csv))
    assert [(r["arm"], r["seed"]) for r in rows] == [
        (arm, seed) for arm in FINAL for seed in range(3)
    ]
    by_run = {(r["arm"], r["seed"]): r for r in rows}
    for seed in range(3):
        ours = by_run[("imagescore", seed)]
        assert (
            ours["ap50_at_swap"] == 55.0 + seed and ours["iteration"] == 900 and ours["evals"] == 1
        )
        assert ours["ap50"] == ours["ap50_last"] == FINAL["imagescore"][seed]
        assert ours["drift_after_swap"] == pytest.approx(FINAL["imagescore"][seed] - 55.0 - seed)
        assert ours["delta_vs_control"] == pytest.approx(
            FINAL["imagescore"][seed] - FINAL["control"][seed]
        )
        assert ours["delta_vs_random"] == pytest.approx(
            FINAL["imagescore"][seed] - FINAL["random"][seed]
        )
        assert math.isnan(ours["delta_vs_all"])  # no all arm
        assert (ours["images"], ours["boxes"], ours["precision"], ours["recall"]) == (
            10,
            20,
            0.75,
            0.5,
        )
        control = by_run[("control", seed)]
        assert control["delta_vs_control"] == 0.0 and control["ap50_at_swap"] == 55.0 + seed


def test_the_summarys_means_are_the_means_of_the_per_seed_rows(two_data_seeds):
    """Pooled over two data seeds and per data seed."""
    summary = summarize(two_data_seeds, swap_iter=SWAP, final_evals=3)
    rows = per_seed(two_data_seeds, swap_iter=SWAP, final_evals=3)
    for row in summary:
        runs = [
            r
            for r in rows
            if r["arm"] == row["arm"] and row["data_seed"] in (POOLED, r["data_seed"])
        ]
        assert len(runs) == row["seeds"]
        assert np.mean([r["delta_vs_control"] for r in runs]) == pytest.approx(
            row["delta_vs_control"], rel=1e-12
        )
        assert np.mean([r["ap50"] for r in runs]) == pytest.approx(row["ap50_mean"], rel=1e-12)
    run = next(r for r in rows if (r["arm"], r["data_seed"], r["seed"]) == ("imagescore", 2, 1))
    assert run["ap50"] == pytest.approx(np.mean(CURVES[("imagescore", 2)][1][-3:]))  # 70, 70, 70
    assert run["drift_after_swap"] == 20.0 and run["evals"] == 3  # 70 - the teacher's 50


def test_per_seed_pairs_each_fraction_with_random_at_that_fraction(at_fractions):
    rows = {
        (arm_label(r["arm"], r["fraction"]), r["seed"]): r
        for r in per_seed(at_fractions, swap_iter=600)
    }
    for seed in range(3):
        ours = rows[("imagescore@0.1", seed)]
        assert ours["fraction"] == 0.1
        assert ours["delta_vs_random"] == pytest.approx(
            finals("imagescore", "0.1")[seed] - finals("random", "0.1")[seed]
        )
        assert ours["delta_vs_all"] == pytest.approx(
            finals("imagescore", "0.1")[seed] - finals("all", "")[seed]
        )
        assert math.isnan(rows[("all", seed)]["delta_vs_random"])  # random ran at two fractions
        assert math.isnan(rows[("control", seed)]["images"])  # nothing pseudo-labelled


def test_per_seed_csv_is_written_with_counts_as_integers_and_floats_in_full(runs_csv, tmp_path):
    folder = Path(runs_csv).parent
    assert summary_main([str(folder)]) == 0
    with open(folder / "per_seed.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == PER_SEED_COLUMNS and len(table) == 12
    ours = next(r for r in table if r["arm"] == "imagescore" and r["seed"] == "1")
    assert (ours["images"], ours["boxes"], ours["precision"]) == ("10", "20", "0.75")
    assert float(ours["delta_vs_control"]) == 62.5 - 62.0 and ours["delta_vs_all"] == ""
    rows = per_seed(read_runs(runs_csv))
    write_per_seed(str(tmp_path / "again.csv"), rows)
    with open(tmp_path / "again.csv", newline="") as f:
        again = list(csv.DictReader(f))
    assert again == table
    assert [float(r["ap50_at_swap"]) for r in again] == [r["ap50_at_swap"] for r in rows]


#: The committed study folders with a per_seed.csv, and the final_evals their summary was made with.
COMMITTED_PER_SEED = {
    "data_seed0": 1,
    "data_seed1": 1,
    "mechanisms_converged/weak_view_ratio_0.5": 1,
    "short_schedule": 1,
    "short_schedule/ranking": 1,
    "room_probe": 3,
    "confirmation": 3,
}


@pytest.mark.parametrize("folder", sorted(COMMITTED_PER_SEED))
def test_the_committed_per_seed_tables_are_written_again_from_their_runs_csv(folder, tmp_path):
    """Each committed per_seed.csv is what per_seed writes from the runs.csv beside it, with the
    final figure its summary.csv took; its paired differences average to that summary's deltas."""
    rows = per_seed(
        read_runs(str(DOCS / folder / "runs.csv")), final_evals=COMMITTED_PER_SEED[folder]
    )
    write_per_seed(str(tmp_path / "per_seed.csv"), rows)
    assert (tmp_path / "per_seed.csv").read_text() == (DOCS / folder / "per_seed.csv").read_text()
    with open(DOCS / folder / "summary.csv") as f:
        committed = list(csv.DictReader(f))
    for row in (r for r in committed if r.get("data_seed", POOLED) == POOLED):
        runs = [r for r in rows if r["arm"] == row["arm"]]
        assert len(runs) == int(row["seeds"])
        expected = float(row["delta_vs_control"])
        assert np.mean([r["delta_vs_control"] for r in runs]) == pytest.approx(
            expected, rel=1e-3, abs=1e-9
        )
