"""matplotlib figures: the artists each plot draws, and PNGs saved from them."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from ascend_sim.timeline import OpRecord, Timeline  # noqa: E402
from ascend_sim.traces import (plot_heatmap, plot_roofline, plot_timeline, plot_utilization, save,  # noqa: E402
                               utilization)
from ascend_sim.traces.plots import PIPE_COLOURS  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def is_png(path):
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_timeline_draws_one_broken_barh_per_lane(pipe_run, tmp_path):
    lanes = {iv.lane for iv in pipe_run.timeline.intervals if iv.device == 0}
    ax = plot_timeline(pipe_run.timeline, max_lanes=len(lanes))
    assert len(ax.collections) == len(lanes)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels[:2] == ["Stream default", "Stream side"] and "AIC0 CUBE" in labels and "AIV0 MTE2" in labels
    assert ax.get_legend() is not None
    assert is_png(save(ax.figure, tmp_path / "timeline.png"))


def test_timeline_keeps_the_first_max_lanes(pipe_run):
    ax = plot_timeline(pipe_run.timeline, max_lanes=12)
    assert len(ax.collections) == 12
    assert "first 12 of" in ax.get_title()


def test_timeline_chosen_lanes_window_and_pipe_colours(pipe_run):
    linear = next(r for r in pipe_run.ops if r.name == "npu_linear")
    start, end = linear.start_us, linear.end_us
    ax = plot_timeline(pipe_run.timeline, lanes=["stream:default", "AIC0.CUBE", "AIC0.MTE2"],
                       start_us=start, end_us=end)
    assert len(ax.collections) == 3
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Stream default", "AIC0 CUBE", "AIC0 MTE2"]
    cube = ax.collections[1]
    assert len(cube.get_paths()) > 0
    assert {to_hex(c) for c in cube.get_facecolors()} == {PIPE_COLOURS["CUBE"]}
    for collection in ax.collections:
        for path in collection.get_paths():
            xs = path.vertices[:, 0]
            assert xs.min() >= start - 1e-9 and xs.max() <= end + 1e-9
    assert ax.get_xlim() == (start, end)


def test_timeline_refuses_a_lane_it_does_not_have(pipe_run):
    with pytest.raises(ValueError, match="no lane 'AIC99.CUBE'"):
        plot_timeline(pipe_run.timeline, lanes=["AIC99.CUBE"])
    with pytest.raises(ValueError, match="device 5 has nothing"):
        plot_timeline(pipe_run.timeline, device=5)


def test_timeline_of_records_alone(tmp_path):
    ops = [OpRecord("npu_silu", 0, "default", 1.0, 2.0, core_type="AIV"),
           OpRecord("all_reduce", 0, "hccl", 4.0, 3.0, core_type="HCCL", attrs={"algorithm": "ring"})]
    ax = plot_timeline(Timeline(ops=ops))
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Stream default", "Communication"]
    assert [len(c.get_paths()) for c in ax.collections] == [1, 1]


def test_roofline_one_point_per_op_with_flops_under_its_roofs(pipe_run):
    with_flops = [r for r in pipe_run.ops if r.flops > 0]
    assert len(with_flops) < len(pipe_run.ops)                    # the format cast has none
    ax = plot_roofline(pipe_run.ops, {"fp16": 313.0, "int8": 626.0}, 1600.0, l2_GBps=7000.0)
    assert len(ax.lines) == 4                                      # (HBM, L2) x (fp16, int8) roofs
    points = np.concatenate([c.get_offsets() for c in ax.collections])
    assert len(points) == len(with_flops)
    linear = next(r for r in with_flops if r.name == "npu_linear")
    expected = (linear.flops / linear.hbm_bytes, linear.flops / linear.duration_us / 1e6)
    assert any(np.allclose(p, expected) for p in points)
    for x, y in points:                                            # nothing beats its HBM roof
        assert y <= min(626.0, x * 1600.0 / 1e3) * 1.0001
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"


def test_utilization_bars_per_unit(pipe_run, tmp_path):
    shares = utilization(pipe_run.ops, n_aic=24, n_aiv=48)
    assert {"AIC CUBE", "AIC MTE2", "AIV VECTOR", "AIV MTE2", "AIV MTE3"} <= set(shares)
    assert all(0 <= v <= 1 for v in shares.values())
    ax = plot_utilization(pipe_run.ops, n_aic=24, n_aiv=48)
    assert len(ax.patches) == len(shares)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(shares)
    assert [p.get_height() for p in ax.patches] == pytest.approx([100 * v for v in shares.values()])
    assert is_png(save(ax, tmp_path / "utilisation.png"))


def test_utilization_of_a_known_run():
    # one AIC op on 4 of 8 cores, its cube busy the whole op, then an equal idle gap
    ops = [OpRecord("npu_linear", 0, "default", 0.0, 10.0, core_type="AIC", block_dim=4,
                    pipe_busy_us={"CUBE": 40.0}, attrs={"cores_used": 4}),
           OpRecord("npu_silu", 0, "default", 19.0, 1.0, core_type="AIV", block_dim=2,
                    pipe_busy_us={"VECTOR": 1.0}, attrs={"cores_used": 2})]
    assert utilization(ops, n_aic=8, n_aiv=4) == pytest.approx({"AIC CUBE": 0.25, "AIV VECTOR": 0.0125})
    # without core counts: the most cores any op used
    assert utilization(ops) == pytest.approx({"AIC CUBE": 0.5, "AIV VECTOR": 0.025})


def test_heatmap_annotates_every_finite_cell(tmp_path):
    values = [[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]]
    ax = plot_heatmap(values, ["m=128", "m=256"], [64, 128, 256], title="TFLOPS", fmt="{:.0f}")
    assert [t.get_text() for t in ax.texts] == ["1", "2", "3", "4", "5"]
    assert len(ax.images) == 1 and ax.get_title() == "TFLOPS"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["64", "128", "256"]
    assert is_png(save(ax.figure, tmp_path / "sweep.png"))
    with pytest.raises(ValueError, match="shape"):
        plot_heatmap(values, ["a"], [1, 2, 3], title="bad")


def test_plots_draw_on_the_axes_given():
    fig, axes = plt.subplots(1, 2)
    assert plot_heatmap([[1.0]], ["r"], ["c"], title="t", ax=axes[1]) is axes[1]
    assert plot_roofline([], 100.0, 1000.0, ax=axes[0]) is axes[0]
    assert len(fig.axes) == 3                                      # the two, and the heat map's colour bar
    with pytest.raises(TypeError, match="Figure or Axes"):
        save("not a figure", "x.png")
