"""The benchmark suite runs end to end at smoke size (so it cannot rot) and writes its JSON."""

import json

import pytest

from benchmarks import run as bench


def test_smoke_run_prints_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    bench.main(["--smoke", "--json", str(path)])
    data = json.loads(path.read_text())
    assert data["smoke"] is True
    assert {"cpu_count", "torch", "date"} <= data["machine"].keys()
    rows = data["rows"]
    assert {r["section"] for r in rows} == set(bench.SECTIONS)
    for row in rows:
        assert {"section", "name", "value", "unit"} <= row.keys()
        assert "error" not in row, row  # a failed measurement, not a skip: the suite has rotted
        if "skipped" in row:  # not measurable here (no CUDA, no archive, or never in smoke): says why
            assert row["value"] is None and row["skipped"].strip()
        elif row["name"].startswith("slowdown"):  # a difference of two timings: noise can make it negative
            assert -100 < row["value"] < 100, row
        else:
            assert row["value"] > 0, row
    measured = {s for s in bench.SECTIONS if any(r["section"] == s and "skipped" not in r for r in rows)}
    # real_data never runs in smoke; every other section measures something on any machine
    assert measured == set(bench.SECTIONS) - {"real_data"}

    loader = [r for r in rows if r["section"] == "loader"]
    assert loader[0]["ratio"] == 1.0 and any(r["name"].startswith("BatchLoader") for r in loader)

    steps = [r for r in rows if r["section"] == "train_step" and "skipped" not in r]
    for model in ("simple_cnn", "resnet18_cifar"):
        names = [r["name"] for r in steps if r["name"].startswith(model)]
        assert any("model alone" in n for n in names) and any("BatchLoader + model" in n for n in names)
        share = next(r for r in steps if r["name"].startswith(f"{model}: loader share"))
        assert share["unit"] == "%" and share["target"] == "<= 10%"
        roof = next(r for r in steps if r["name"].startswith(f"{model}: training FLOP/s"))
        assert roof["ratio"] > 0 and roof["forward_flops_per_image"] > 0
    assert any("matmul" in r["name"] for r in steps)

    cpu = [r for r in rows if r["section"] == "cpu_path"]
    assert [r["name"].split(": ")[1].split(" (")[0] for r in cpu] == \
        ["NCHW", "NHWC", "NHWC + kept memory", "training FLOP/s, ratio to matmul peak"]
    assert cpu[0]["ratio"] == 1.0 and all(r["value"] > 0 and r["studies"] for r in cpu)
    shares = cpu[-1]["time_shares"]  # where the step's time goes: every op counted once
    assert set(shares) == {"convolution", "batch norm", "ReLU", "other"} and shares["convolution"] > 0.2
    assert sum(shares.values()) == pytest.approx(1) and 0 < cpu[-1]["ratio"] < 2

    recording = [r for r in rows if r["section"] == "recording"]
    assert recording[0]["name"] == "train_epoch, no records" and recording[0]["ratio"] == 1.0
    assert any(r["name"].startswith("slowdown") and r["target"] == "<= 10%" for r in recording)

    cams = [r for r in rows if r["section"] == "gradcam" and "skipped" not in r]
    assert cams[0]["ratio"] == 1.0 and "one image at a time" in cams[0]["name"] and "batched" in cams[1]["name"]

    views = [r for r in rows if r["section"] == "explorer"]
    assert [r["name"].split(": ")[1].split(" (")[0] for r in views] == ["first view of an image", "revisit, from the cache"]
    assert all(r["unit"] == "s/image" and r["target"] == "<= 1 s per image" and r["threads"] == 1 for r in views)
    assert views[0]["compute_s"] > 0 and views[0]["draw_s"] > 0 and views[1]["value"] < views[0]["value"]

    e2e = [r for r in rows if r["section"] == "end_to_end"]
    assert e2e[0]["notebooks"] and all(v["status"] == "ok" for v in e2e[0]["notebooks"].values())
    assert any(r["unit"] == "GB" and r.get("target") == "<= 4 GB" for r in e2e)

    out = capsys.readouterr().out
    assert "BatchLoader" in out and "img/s" in out and "CAMs/s" in out
    assert "real_data / " in out and "skipped" in out  # the skip reason is printed under the table


def test_real_data_skips_without_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_ARCHIVE", str(tmp_path / "absent.tar.gz"))
    (row,) = bench.bench_real_data(smoke=False)
    assert row["value"] is None and "absent.tar.gz" in row["skipped"]


@pytest.mark.parametrize("argv", [["--smoke", "--quick"], ["--only", "loader", "--quick"], ["--only", "nope"]])
def test_bad_flag_combinations_are_rejected(argv):
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2


def test_side_by_side_counts_the_slowest_process():
    """cpu_path's side-by-side contender (what --workers auto does on a CPU): the processes run, and the
    machine's throughput is n x the slowest one, so a process that lags cannot inflate it."""
    from benchmarks import cpu_path

    model = cpu_path.quick_models()[-1]  # SimpleCNN, the fastest to time
    rates = [cpu_path._child("nhwc+kept", [model], 2, 1)[model["label"]] for _ in range(2)]
    together = cpu_path.side_by_side([model], 2, 2)[model["label"]]
    assert set(cpu_path.side_by_side([model], 2, 1)) == {model["label"]}
    assert 0 < together <= 2 * max(rates) * 1.5  # two at once cannot beat two alone by much


def test_side_by_side_is_n_times_the_slower_process(monkeypatch):
    from benchmarks import cpu_path

    measured = iter([{"m": 100.0}, {"m": 80.0}, {"m": 90.0}])
    monkeypatch.setattr(cpu_path, "_start", lambda *a: next(measured))
    monkeypatch.setattr(cpu_path, "_result", lambda child: child)
    assert cpu_path.side_by_side([{"label": "m"}], 2, 3) == {"m": 240.0}
