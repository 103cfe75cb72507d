"""The run-format version: written in run.json and every table part, a newer one refused by every
writer with one line, unknown keys and columns carried through by this one."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attnlife.store.analysis_tables import write_analysis_table
from attnlife.store.metrics_table import MetricWriter, read_metrics
from attnlife.store.part_table import METRICS_SCHEMA, SPECTRA_SCHEMA, write_part
from attnlife.store.run_dir import load_run, write_run_json
from attnlife.store.run_format import (FORMAT_KEY, PART_FORMAT_KEY, RUN_FORMAT, NewerFormatError,
                                       check_writable, recorded_format)
from tests.faults.conftest import cli, train_args, tree_snapshot


def _set_format(run: Path, version: int, **extra: object) -> None:
    record = json.loads((run / "run.json").read_text())
    record[FORMAT_KEY] = version
    record.update(extra)
    (run / "run.json").write_text(json.dumps(record))


def test_every_written_file_carries_the_format(workspace) -> None:
    run = workspace / "run"
    assert json.loads((run / "run.json").read_text())[FORMAT_KEY] == RUN_FORMAT == 1
    parts = sorted((run / "metrics").glob("part-*.parquet"))
    assert parts and all(pq.read_schema(p).metadata[PART_FORMAT_KEY] == b"1" for p in parts)
    table = write_analysis_table(run, "samples", pd.DataFrame({"step": [0], "text": ["a"]}))
    assert pq.read_schema(table).metadata[PART_FORMAT_KEY] == b"1"
    assert pd.read_parquet(table).equals(pd.DataFrame({"step": [0], "text": ["a"]}))
    assert recorded_format(run) == 1


def test_newer_run_format_is_refused_by_train_and_spectra(workspace, capsys) -> None:
    run = workspace / "run"
    metrics = load_run(run).metrics()
    _set_format(run, RUN_FORMAT + 1)
    before = tree_snapshot(workspace)
    for argv in (train_args(workspace / "data", run, 12), ["spectra", str(run), "--quiet"]):
        result = cli(*argv, capsys=capsys)
        assert result.code == 2 and len(result.error_lines) == 1, result.err[-2000:]
        assert f"was written by a newer attnlife (run format {RUN_FORMAT + 1}, this one writes " \
               f"format {RUN_FORMAT}) and is left untouched" in result.err
        assert tree_snapshot(workspace) == before
    with pytest.raises(NewerFormatError):
        MetricWriter(run)
    with pytest.raises(NewerFormatError):
        write_run_json(run, {"kind": "x"})
    assert load_run(run).metrics().equals(metrics)   # reading a newer format is allowed
    assert tree_snapshot(workspace) == before


def test_newer_format_found_in_a_part_without_run_json(tmp_path) -> None:
    rows = pd.DataFrame({"model": ["m"], "step": [0], "layer": [0], "head_index": [0],
                         "matrix": ["qk"], "stat": ["fro"], "value": [1.0]})
    part = write_part(tmp_path / "spectra", rows, SPECTRA_SCHEMA)
    check_writable(tmp_path)
    table = pq.read_table(part)
    pq.write_table(table.replace_schema_metadata({PART_FORMAT_KEY: b"7"}), part)
    with pytest.raises(NewerFormatError, match="run format 7"):
        check_writable(tmp_path)


def test_unknown_columns_are_carried_and_keep_rows_apart(tmp_path) -> None:
    MetricWriter(tmp_path).close()
    frame = pd.DataFrame({"step": [3, 3], "split": ["train"] * 2, "layer": [0, 0], "head_index": [1, 1],
                          "layer_b": [-1, -1], "metric": ["entropy_bits"] * 2, "value": [1.5, 2.5],
                          "stderr": [0.1, 0.2], "shard": ["a", "b"]})
    table = pa.Table.from_pandas(frame, preserve_index=False)
    pq.write_table(table, tmp_path / "metrics" / "part-00000000000000000001-0000001-000001.parquet")
    writer = MetricWriter(tmp_path)
    writer.log(4, "loss", 3.0)
    writer.close()
    got = read_metrics(tmp_path)
    assert list(got.columns) == METRICS_SCHEMA.names + ["shard"]
    rows = got[got.step == 3].sort_values("shard")
    assert rows.shard.tolist() == ["a", "b"] and rows.value.tolist() == [1.5, 2.5]
    assert got[got.step == 4].shard.isna().all() and got[got.step == 4].value.tolist() == [3.0]


def test_resume_keeps_run_json_keys_it_does_not_know(workspace, capsys) -> None:
    run = workspace / "run"
    _set_format(run, RUN_FORMAT, future_section={"added_by": "a newer attnlife", "n": [1, 2]})
    result = cli(*train_args(workspace / "data", run, 12), capsys=capsys)
    assert result.code == 0, result.err[-2000:]
    record = json.loads((run / "run.json").read_text())
    assert record["future_section"] == {"added_by": "a newer attnlife", "n": [1, 2]}
    assert record[FORMAT_KEY] == RUN_FORMAT and len(record["segments"]) == 2
