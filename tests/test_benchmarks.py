"""The benchmark suite runs end to end at smoke size (so it cannot rot) and writes its JSON."""

import json

from benchmarks import run as bench


def test_smoke_run_prints_table_and_writes_json(tmp_path, capsys):
    path = tmp_path / "out.json"
    bench.main(["--smoke", "--json", str(path)])
    data = json.loads(path.read_text())
    assert data["smoke"] is True
    assert {"cpu_count", "torch", "date"} <= data["machine"].keys()
    sections = {r["section"] for r in data["rows"]}
    assert sections == set(bench.SECTIONS)
    for row in data["rows"]:
        assert {"section", "name", "value", "unit"} <= row.keys()
        assert row["value"] > 0
    loader = [r for r in data["rows"] if r["section"] == "loader"]
    assert loader[0]["ratio"] == 1.0 and any(r["name"].startswith("BatchLoader") for r in loader)
    out = capsys.readouterr().out
    assert "BatchLoader" in out and "img/s" in out
