"""The TUI's pure helpers: line-preserving YAML edits, decimated series, chart binning."""

from __future__ import annotations

import yaml

from tui_tuner.tui.run_view import DecimatedSeries
from tui_tuner.core.units import format_duration
from tui_tuner.tui.widgets.config_form import parse_field_text
from tui_tuner.tui.widgets.line_chart import bin_points, format_tick
from tui_tuner.tui.yaml_edit import set_yaml_value, yaml_scalar

TEXT = "model:\n  name_or_path: foo  # the base\nlora:\n  r: 8\n\ntraining:\n  learning_rate: 2.0e-4\n"


def test_set_existing_value_keeps_comment_and_layout():
    out = set_yaml_value(TEXT, ("model", "name_or_path"), "org/model")
    assert out.splitlines()[1] == "  name_or_path: org/model  # the base"
    assert out.replace("org/model", "foo") == TEXT


def test_set_missing_key_goes_into_its_section_or_a_new_one():
    out = set_yaml_value(TEXT, ("lora", "alpha"), 16)
    assert yaml.safe_load(out)["lora"] == {"r": 8, "alpha": 16}
    assert out.splitlines()[4] == "  alpha: 16"
    out = set_yaml_value(TEXT, ("data", "train"), "data/x.jsonl")
    assert yaml.safe_load(out)["data"] == {"train": "data/x.jsonl"}


def test_values_round_trip_through_yaml():
    for value in (1e-5, 0.0002, 3.0, 16, None, True, "a: b", "2e-4x"):
        assert yaml.safe_load(yaml_scalar(value)) == value


def test_unparseable_text_is_left_alone():
    broken = "lora:\n  r: [1,\n"
    assert set_yaml_value(broken, ("lora", "r"), 4) == broken


def test_field_text_is_read_like_yaml():
    assert parse_field_text("16") == 16
    assert parse_field_text("2e-4") == 2e-4
    assert parse_field_text("") is None
    assert parse_field_text("abc") == "abc"


def test_decimated_series_stays_small_and_spans_the_history():
    series = DecimatedSeries(capacity=64)
    for step in range(1, 100_001):
        series.append(step, 1.0 / step)
    points = series.view()
    assert len(points) <= 128
    assert points[0][0] < 1000 and points[-1][0] > 99_000
    assert series.count == 100_000
    series.drop_after(50_000)
    assert series.view()[-1][0] <= 50_000


def test_bin_points_keeps_extremes_of_each_column():
    bins = bin_points([(0, 1.0), (1, 5.0), (2, 3.0), (10, 2.0)], 0, 10, 2)
    assert bins == [(1.0, 5.0), (2.0, 2.0)]


def test_labels_are_short():
    assert format_tick(1234.0) == "1234"
    assert format_tick(123456.0) == "123k"
    assert format_tick(0.0002) == "2.0e-04"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(None) == "-"


async def test_chart_draws_a_line_without_gaps_between_sparse_points():
    from textual.app import App

    from tui_tuner.tui.widgets.line_chart import ChartSeries, LineChart

    class ChartApp(App):
        def compose(self):
            yield LineChart(id="chart")

    app = ChartApp()
    async with app.run_test(size=(40, 12)) as pilot:
        chart = app.query_one(LineChart)
        chart.set_series([ChartSeries("loss", [(0, 1.0), (5, 3.0), (10, 0.5)])])
        await pilot.pause()
        rows = [chart.render_line(y).text for y in range(chart.size.height)]
        plot_rows = rows[1:-2]  # legend above, axis and labels below
        axis_w = plot_rows[0].index("┤") + 1
        columns_with_dots = {x for row in plot_rows for x, ch in enumerate(row)
                             if x >= axis_w and "\u2800" < ch <= "\u28ff"}
        assert columns_with_dots == set(range(axis_w, chart.size.width))
        assert "loss" in rows[0] and rows[-1].strip().startswith("0")
