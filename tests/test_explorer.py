"""helpers.explorer: the widgets driven through their values, the views they show, the static panel
of the reports, and the export that keeps widget junk out of them."""

import os
from types import SimpleNamespace

import ipywidgets
import nbformat
import numpy as np
import pandas as pd
import pytest
from nbconvert import HTMLExporter, LatexExporter

from helpers import cam, export, kernel, page, study
from helpers import explorer as X
from helpers.profiles import settings

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def bn():
    """The bn_ablation smoke study, one seed and one epoch: two tiny trained models and their predictions."""
    S = settings("bn_ablation", "smoke", seeds=1, epochs=1, device="cpu")
    data = S.load_data()
    runs = study.train(S, data, progress=False)
    return S, data, runs, study.predict(runs, data, S)


def make(bn, lists=None, **kw) -> X.Explorer:
    S, data, runs, preds = bn
    p0 = {"baseline": preds["baseline"][0], "BatchNorm": preds["batchnorm"][0]}
    defaults, reasons = X.default_lists(p0, data.classes)
    nets = {"baseline": runs["baseline"][0], "BatchNorm": runs["batchnorm"][0]}
    return X.Explorer(nets, p0, data.test_images, data.classes, {**(lists or {}), **defaults}, reasons, **kw)


def titles(fig) -> str:
    return "\n".join([ax.get_title() for ax in fig.axes] + [t.get_text() for t in fig.texts])


def test_a_view_is_both_models_top5_their_maps_and_scores(bn):
    ex = make(bn)
    p = ex.preds["baseline"]
    right = int(np.flatnonzero(p.correct)[0]) if p.correct.any() else None
    view = ex.view(7)
    for name, preds in ex.preds.items():
        probs = [q for _, q in view.top5[name]]
        assert len(probs) == 5 and probs == sorted(probs, reverse=True)
        assert view.top5[name][0] == (int(preds.pred[7]), pytest.approx(float(preds.probs[7].max())))
        for kind in ("answer", "true class"):
            heat = view.maps[(name, kind)]
            assert heat.shape == (32, 32) and 0 <= heat.min() and heat.max() <= 1
            assert all(np.isfinite(view.road[(name, kind)]))
    assert view.percentiles == X.PERCENTILES and view.seconds > 0
    if right is not None:  # a right answer: its map for the true class is the map for its answer
        v = ex.view(right)
        assert np.array_equal(v.maps[("baseline", "answer")], v.maps[("baseline", "true class")])
    fig = ex.figure(7)
    text = titles(fig)
    road, rand = view.road[("BatchNorm", "true class")]
    assert f"test image #7" in text and f"ROAD {road:+.1f} (random {rand:+.1f})" in text
    assert "20th and 80th percentiles" in text


def test_views_are_computed_once_and_kept(bn, monkeypatch):
    ex = make(bn)
    calls = []
    real = cam.compute_cams
    monkeypatch.setattr(cam, "compute_cams", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = ex.view(3)
    png = ex.png(3)
    assert png.startswith(PNG) and len(calls) == 2  # one call per model
    assert ex.view(3) is first and ex.png(3) is png and len(calls) == 2
    ex.view(4)
    assert len(calls) == 4 and list(ex.cache) == [3, 4]


def test_bad_indices_are_clear_errors(bn):
    ex = make(bn)
    for bad in (ex.n, -1, 2.5, "3", True):
        with pytest.raises(IndexError, match=rf"pick 0\.\.{ex.n - 1}"):
            ex.view(bad)
    with pytest.raises(ValueError, match=r"outside 0\.\."):
        make(bn, lists={"mine": [0, ex.n]})
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        make(bn, threads=0)
    with pytest.raises(ValueError, match="unknown list 'nope'; the lists: .*rescued by BatchNorm"):
        X.ExplorerWidget(ex).pick("nope")


def test_the_widget_follows_its_controls(bn):
    ex = make(bn)
    w = X.ExplorerWidget(ex)
    fails = ex.lists["baseline: failures"]
    assert w.source.value == "baseline: failures" and w.index.value == fails[0]
    assert f"#{fails[0]}," in w.status.value and f"1 of {len(fails)} in" in w.status.value
    assert "baseline is wrong; most confident mistakes first" in w.status.value
    shown = bytes(w.image.value)
    assert shown.startswith(PNG)
    w.next.click()
    assert w.index.value == fails[1] and f"2 of {len(fails)}" in w.status.value and bytes(w.image.value) != shown
    w.prev.click()
    w.prev.click()  # wraps around to the last one
    assert w.index.value == fails[-1] and f"{len(fails)} of {len(fails)}" in w.status.value
    w.source.value = "rescued by BatchNorm"
    rescued = ex.lists["rescued by BatchNorm"]
    assert w.index.value == rescued[0] and "baseline is wrong, BatchNorm is right" in w.status.value
    label = ex.classes[int(ex.labels[rescued[0]])]
    w.klass.value = label
    assert ex.classes[int(ex.labels[w.index.value])] == label and f"(class {label})" in w.status.value


def test_the_widget_jumps_to_any_index_and_clamps_out_of_range(bn):
    ex = make(bn, lists={"two": [5, 9]})
    w = X.ExplorerWidget(ex)
    assert w.source.value == "two" and w.index.value == 5
    w.index.value = 11
    assert "#11," in w.status.value and "not in “two”" in w.status.value
    w.next.click()  # from outside the list: its first image
    assert w.index.value == 5 and "1 of 2 in “two”" in w.status.value
    w.index.value = 10 ** 6  # BoundedIntText caps the value: the last test image
    assert w.index.value == ex.n - 1 and f"#{ex.n - 1}," in w.status.value
    w.source.value = X.ALL
    assert w.index.value == 0 and f"1 of {ex.n} in “{X.ALL}”" in w.status.value


def test_a_class_missing_from_a_list_is_said(bn):
    ex = make(bn)
    same = np.flatnonzero(ex.labels == ex.labels[0])[:2]
    other = next(c for c in ex.classes if c != ex.classes[int(ex.labels[0])])
    w = X.ExplorerWidget(make(bn, lists={"one class": same}))
    w.klass.value = other
    assert f"No test image of class {other} in “one class”" in w.status.value
    assert w.next.disabled and w.prev.disabled
    w.next.click()  # nothing to step through: nothing happens
    assert "No test image" in w.status.value


def captured(monkeypatch) -> list:
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj, **kw: shown.append(obj))
    return shown


def test_reports_get_a_static_panel_and_a_note(bn, tmp_path, monkeypatch):
    S, data, runs, preds = bn
    monkeypatch.setenv(X.HEADLESS, "1")
    shown = captured(monkeypatch)
    figs = page.Figures(tmp_path)
    X.compare(S, runs, preds, data, figs)
    assert not any(isinstance(o, ipywidgets.Widget) for o in shown)
    note = shown[0]
    bundle = note._repr_mimebundle_()
    assert "live explorer is in the notebook" in bundle["text/latex"] and "make lab" in bundle["text/html"]
    images = [o for o in shown if type(o).__name__ == "Image"]
    assert 1 <= len(images) <= 3 and all(o.data.startswith(PNG) for o in images)
    captions = [o.plain for o in shown[1:] if isinstance(o, page.Element)]
    assert all("The explorer's view of the first image of “" in c for c in captions)
    assert figs.paths and all(p.startswith("figures/explorer_") for p in figs.paths)
    assert captions[0].split("“")[1].startswith("baseline: failures”")


def test_a_live_kernel_gets_the_widget_whose_saved_copy_is_a_note(bn, tmp_path, monkeypatch):
    S, data, runs, preds = bn
    monkeypatch.setattr("helpers.explorer.images.live", lambda: True)
    shown = captured(monkeypatch)
    X.compare(S, runs, preds, data, page.Figures(tmp_path))
    [w] = shown
    assert isinstance(w, X.ExplorerWidget)
    bundle = w._repr_mimebundle_()
    assert export.WIDGET_VIEW in bundle  # JupyterLab draws the widget
    assert "VBox" not in bundle["text/plain"] and "JupyterLab (make lab)" in bundle["text/latex"]


def test_live_means_a_kernel_that_is_not_the_runners(monkeypatch):
    monkeypatch.delenv(X.HEADLESS, raising=False)
    monkeypatch.setattr("helpers.explorer.frontend.get_ipython", lambda: None)
    assert not X.live()  # plain Python
    monkeypatch.setattr("helpers.explorer.frontend.get_ipython", lambda: SimpleNamespace(kernel=object()))
    assert X.live()
    monkeypatch.setattr("helpers.explorer.frontend.get_ipython", lambda: SimpleNamespace(kernel=None))
    assert not X.live()  # a terminal IPython has no frontend for widgets
    monkeypatch.setattr("helpers.explorer.frontend.get_ipython", lambda: SimpleNamespace(kernel=object()))
    with kernel.kernel_env():  # what the runner's kernels inherit
        assert os.environ[X.HEADLESS] == "1" and not X.live()
    assert X.HEADLESS not in os.environ


def widget_notebook():
    nb = nbformat.v4.new_notebook()
    view = {"model_id": "abc", "version_major": 2, "version_minor": 0}
    note = page.banner(X.WIDGET_NOTE)
    cell = nbformat.v4.new_code_cell("x")
    cell.outputs = [
        nbformat.v4.new_output("display_data", {"text/plain": "VBox(children=(HBox(children=...", export.WIDGET_VIEW: view}),
        nbformat.v4.new_output("display_data", {"text/plain": note.plain, "text/html": note.html,
                                                "text/latex": note.latex, export.WIDGET_VIEW: view}),
        nbformat.v4.new_output("stream", name="stdout", text="kept\n")]
    nb.cells = [cell]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    return nb


def test_exports_drop_widget_views_and_keep_the_note():
    nb = widget_notebook()
    assert export.drop_widgets(nb) == 2
    outputs = nb.cells[0].outputs
    assert len(outputs) == 2 and export.WIDGET_VIEW not in outputs[0]["data"] and "widgets" not in nb.metadata
    html, _ = HTMLExporter(config=export.report_config()).from_notebook_node(nb)
    latex, _ = LatexExporter(config=export.report_config()).from_notebook_node(nb)
    for body in (html, latex):
        assert "VBox" not in body and "widget-view" not in body and "make lab" in body
    undropped, _ = HTMLExporter(config=export.report_config()).from_notebook_node(widget_notebook())
    assert "widget-view" in undropped  # without drop_widgets the report would carry an empty widget


def test_export_reads_notebooks_without_widgets(tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(widget_notebook(), path)
    nb, _ = export.read(path)
    assert all(export.WIDGET_VIEW not in o.get("data", {}) for o in nb.cells[0].outputs)


# --- notebook 04: records ------------------------------------------------------------------------

def fake_run(scale: float):
    """Records of two layers over two epochs, two records each: values known by construction."""
    rows = [(step, 1 + (step > 2), layer) for step in (1, 2, 3, 4) for layer in ("conv1", "fc")]
    base = pd.DataFrame(rows, columns=["step", "epoch", "layer"])
    grad = base.assign(mean_abs=scale * base["step"], max_abs=1.0, norm=scale * 10 * base["step"],
                       vanishing=False, exploding=False)
    upd = base.assign(update_norm=1.0, relative_update=scale / base["step"], weight_norm=1.0, weight_mean=0.0,
                      weight_std=scale, weight_max_abs=0.5 * scale)
    return SimpleNamespace(gradients=grad, updates=upd)


def test_epoch_means_average_each_epochs_records():
    means = X.epoch_means(fake_run(1.0))
    row = means.loc[("conv1", 2)]
    assert row["mean_abs"] == pytest.approx(3.5) and row["norm"] == pytest.approx(35)
    assert row["relative_update"] == pytest.approx((1 / 3 + 1 / 4) / 2) and row["records"] == 2
    table = X.layer_table({"a": means, "b": X.epoch_means(fake_run(2.0))}, "fc", 1)
    assert list(table.index) == ["a", "b"] and table.loc["b", "mean |gradient|"] == pytest.approx(3.0)
    assert list(table.columns) == [*X.RECORD_COLUMNS.values(), "records"]
    with pytest.raises(ValueError, match=r"layers: conv1, fc; epochs: \[1, 2\]"):
        X.layer_table({"a": means}, "conv9", 1)


def test_the_records_widget_follows_layer_and_epoch():
    means = {"exp 1": X.epoch_means(fake_run(1.0)), "exp 2": X.epoch_means(fake_run(2.0))}
    w = X.RecordsWidget(means)
    assert w.layer.value == "conv1" and w.epoch.value == 2 and (w.epoch.min, w.epoch.max) == (1, 2)
    assert "conv1 at epoch 2" in w.table.value and "3.50" in w.table.value and bytes(w.image.value).startswith(PNG)
    before = bytes(w.image.value)
    w.epoch.value = 1
    assert "conv1 at epoch 1" in w.table.value and "1.50" in w.table.value and bytes(w.image.value) != before
    w.layer.value = "fc"
    assert "fc at epoch 1" in w.table.value
    assert "VBox" not in w._repr_mimebundle_()["text/plain"]


def test_the_report_shows_one_layer_and_a_note(tmp_path, monkeypatch):
    monkeypatch.setenv(X.HEADLESS, "1")
    shown = captured(monkeypatch)
    figs = page.Figures(tmp_path)
    X.records({"exp 1": fake_run(1.0), "exp 2": fake_run(2.0)}, figs)
    assert "pick any layer and epoch" in shown[0].latex
    assert not any(isinstance(o, ipywidgets.Widget) for o in shown)
    assert figs.paths == ["figures/records_explorer.png"]
    assert any(isinstance(o, page.Element) and o.plain.startswith("Table 1. Layer conv1 at epoch 2") for o in shown)
