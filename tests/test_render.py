"""Pages rendered from their data: tables and numbers between markers come from the file."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imagescore_det.reports.render import RenderError, main, render_page

CSV = "arm,data_seed,ap50_mean,delta_vs_control,seeds\ncontrol,pooled,68.4149,0,9\nimagescore,pooled,70.1234,1.7085,9\nimagescore,11,69.5,1.1,3\n"
PAGE = """# Study

<!-- table: file=data/summary.csv; columns=arm:arm,ap50_mean:AP50,seeds; where=data_seed:pooled -->
stale
<!-- end table -->

The swap gains <!-- number: file=data/summary.csv; where=arm:imagescore,data_seed:pooled; column=delta_vs_control; format=+.1f -->+9.9<!-- end number --> AP50
and the bench <!-- number: file=data/bench.json; key=ratios.1; format=.3f -->?<!-- end number -->.
"""


@pytest.fixture
def page(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "summary.csv").write_text(CSV)
    (tmp_path / "data" / "bench.json").write_text(json.dumps({"ratios": [0.5, 1.01234]}))
    path = tmp_path / "page.md"
    path.write_text(PAGE)
    return path


def test_render_writes_the_tables_and_numbers_from_the_files(page):
    text = render_page(page.read_text(), str(page.parent))
    assert (
        "| arm | AP50 | seeds |\n|---|---|---|\n| control | 68.41 | 9 |\n| imagescore | 70.12 | 9 |\n"
        in text
    )
    assert "| 69.50 |" not in text  # data seed 11's row does not match where=
    assert "gains <!-- number:" in text and "-->+1.7<!-- end number --> AP50" in text
    assert "-->1.012<!-- end number -->." in text
    assert render_page(text, str(page.parent)) == text  # rendering is idempotent


def test_check_fails_on_a_number_edited_by_hand_and_passes_once_rendered(page, capsys):
    assert main(["--check", str(page)]) == 1  # the committed page holds stale values
    assert main([str(page)]) == 0
    assert main(["--check", str(page)]) == 0
    page.write_text(page.read_text().replace("| 70.12 |", "| 70.13 |"))
    assert main(["--check", str(page)]) == 1
    assert "70.13" in capsys.readouterr().out  # the diff shows what differs


@pytest.mark.parametrize(
    "marker, message",
    [
        (
            "<!-- number: file=data/summary.csv; where=arm:random; column=ap50_mean -->x<!-- end number -->",
            "matches 0 rows",
        ),
        (
            "<!-- number: file=data/summary.csv; where=arm:imagescore; column=ap50_mean -->x<!-- end number -->",
            "matches 2 rows",
        ),
        (
            "<!-- table: file=data/summary.csv; columns=arm,p_value -->x<!-- end table -->",
            "no column 'p_value'",
        ),
        ("<!-- table: file=data/missing.csv -->x<!-- end table -->", "no file"),
        ("<!-- number: file=data/bench.json; key=ratios.7 -->x<!-- end number -->", "no key"),
    ],
)
def test_a_marker_that_cannot_be_rendered_names_itself_and_the_cause(page, marker, message):
    with pytest.raises(RenderError, match=message) as error:
        render_page(marker, str(page.parent), "docs/x.md")
    assert "docs/x.md" in str(error.value) and marker.split(" -->")[0] in str(error.value)


def test_the_committed_pages_are_up_to_date():
    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md"] + sorted((root / "docs").glob("*.md"))
    pages += sorted((root / "docs").glob("**/report.md"))  # the classification reports
    pages += sorted((root / "docs").glob("*/**/README.md"))  # study folders' own pages (room probe)
    result = subprocess.run(
        [sys.executable, "-m", "imagescore_det.reports.render", "--check", *pages],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_table_formats_named_columns_its_own_way_and_counts_with_an_integer_spec(page):
    marker = (
        "<!-- table: file=data/summary.csv; columns=arm,ap50_mean,seeds; where=data_seed:pooled; "
        "format=.4f; formats=ap50_mean:.1f -->x<!-- end table -->"
    )
    assert "| control | 68.4 | 9 |\n| imagescore | 70.1 | 9 |" in render_page(
        marker, str(page.parent)
    )
    count = "<!-- number: file=data/summary.csv; where=arm:control; column=seeds; format=,d -->x<!-- end number -->"
    (page.parent / "data" / "summary.csv").write_text(CSV.replace(",9\n", ",12345\n", 1))
    assert "-->12,345<!--" in render_page(count, str(page.parent))
    with pytest.raises(RenderError, match="no column 'p_value'"):
        render_page(marker.replace("formats=ap50_mean", "formats=p_value"), str(page.parent))
