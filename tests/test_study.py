"""The study's summary arithmetic on a hand-made runs.csv, checked against closed forms (no scipy)."""

import csv
import math

import pytest

from imagescore_det.study.summary import (
    RUN_COLUMNS,
    control_drift,
    drift_note,
    plot_curves,
    read_runs,
    summarize,
    write_summary,
)

# (arm, seed, iteration, ap50): the iteration-600 rows are the shared teacher's, the last one counts.
FINAL = {
    "control": [60.0, 62.0, 61.0],
    "imagescore": [61.5, 62.5, 63.0],  # differences 1.5, 0.5, 2.0
    "random": [59.0, 62.0, 60.0],  # differences -1, 0, -1
    "oracle": [70.0, 71.0, 69.0],  # differences 10, 9, 8
}


@pytest.fixture
def runs_csv(tmp_path):
    path = tmp_path / "runs.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RUN_COLUMNS)
        for arm, values in FINAL.items():
            for seed, value in enumerate(values):
                writer.writerow([arm, seed, 600, 55.0 + seed, 30.0, "", "", "", ""])
                writer.writerow([arm, seed, 900, value, value / 2, 10, 20, 0.75, 0.5])
    return str(path)


def t_distribution_2df_upper_tail(t):
    """P(T > t) for Student's t with 2 degrees of freedom: 1/2 - t / (2 sqrt(2 + t^2))."""
    return 0.5 - t / (2 * math.sqrt(2 + t * t))


def test_delta_p_value_and_gap_closed_match_hand_computation(runs_csv):
    summary = {row["arm"]: row for row in summarize(read_runs(runs_csv))}
    assert list(summary) == ["control", "imagescore", "random", "oracle"]
    ours = summary["imagescore"]
    assert ours["seeds"] == 3 and ours["iteration"] == 900
    assert ours["ap50_mean"] == pytest.approx(62.3333333333, abs=1e-9)
    assert ours["ap50_sd"] == pytest.approx(
        math.sqrt(((61.5 - 187 / 3) ** 2 + (62.5 - 187 / 3) ** 2 + (63 - 187 / 3) ** 2) / 2)
    )
    assert ours["delta_vs_control"] == pytest.approx(4 / 3)
    # differences 1.5, 0.5, 2: mean 4/3, sd sqrt(21)/6, t = (4/3) / (sd / sqrt 3) = 8 / sqrt 7
    assert ours["p_value"] == pytest.approx(
        t_distribution_2df_upper_tail(8 / math.sqrt(7)), rel=1e-9
    )
    assert ours["p_value"] == pytest.approx(0.5 - 4 / math.sqrt(78), rel=1e-9)
    assert ours["gap_closed"] == pytest.approx((4 / 3) / 9)
    assert summary["oracle"]["gap_closed"] == pytest.approx(1.0)
    assert (
        summary["random"]["delta_vs_control"] == pytest.approx(-2 / 3)
        and summary["random"]["p_value"] > 0.5
    )
    assert (
        math.isnan(summary["control"]["p_value"]) and summary["control"]["delta_vs_control"] == 0.0
    )


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
    )
    assert "| imagescore | 3 | 900 |" in (tmp_path / "summary.md").read_text()
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
    )
    path = tmp_path / "runs.csv"
    path.write_text("arm,seed,iteration,ap50,ap\ncontrol,0,9,fifty,20\n")
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
    assert drift == pytest.approx({0: 5.0, 1: 6.0, 2: 4.0})
    assert drift_note(drift, 600).endswith("seed 0: 5.00, seed 1: 6.00, seed 2: 4.00.")
    assert control_drift(rows, swap_iter=900) == {}
