"""The CLI's one error path: what a user can fix is one line on stderr and exit status 2; --debug adds the
traceback. Bad inputs lose nothing: a stage's own column is replaced, never doubled; a killed write's temp
file goes with the next run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT
from warc_helpers import cc_records, members

from danqing import cli, io


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("danqing: error: ") and "Traceback" not in err, err
    return lines[0]


def test_a_missing_or_folder_input_is_one_line(capsys, tmp_path):
    code, _, err = _cli(capsys, "extract", str(tmp_path / "missing.warc.gz"), "--out", str(tmp_path / "o.parquet"))
    assert code == 2 and "missing.warc.gz: No such file or directory" in _one_line(err)
    code, _, err = _cli(capsys, "extract", str(tmp_path), "--out", str(tmp_path / "o.parquet"))
    assert code == 2 and "Is a directory" in _one_line(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no output, no temp file


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError):
        cli.main(["--debug", "extract", str(tmp_path / "missing.warc.gz"), "--out", str(tmp_path / "o.parquet")])


@pytest.mark.parametrize(("config", "message"), [
    ('{"download": {"image_size_px": -10}}', "download.image_size_px"),
    ('[{"download": {}}]', "must be a JSON object of sections, not a list"),
    ("{not json", "is not JSON"),
])
def test_a_bad_config_is_one_line(capsys, tmp_path, config, message):
    code, _, err = _cli(capsys, "--config", config, "lineage", "CC-MAIN-2025-47")
    assert code == 2 and message in _one_line(err)
    path = tmp_path / "cfg.json"
    path.write_text(config)
    code, _, err = _cli(capsys, "--config", str(path), "lineage", "CC-MAIN-2025-47")
    assert code == 2 and message in _one_line(err)


def test_download_without_an_id_column_says_so(capsys, tmp_path):
    io.write_parquet(pa.table({"url": ["http://img.test/a.jpg"], "alt_text": ["图片"]}), str(tmp_path / "in.parquet"))
    code, _, err = _cli(capsys, "--config", json.dumps({"root": str(tmp_path / "data")}), "download",
                        str(tmp_path / "in.parquet"), "--out", str(tmp_path / "out"))
    assert code == 2 and "has no 'id' column" in _one_line(err)


def test_refine_on_its_own_output_keeps_one_caption_column(capsys, tmp_path):
    rows = pa.table({"id": ["a", "b"], "url": ["http://i.test/1.jpg", "http://i.test/2.jpg"],
                     "alt_text": ["北欧风格实木餐桌椅组合家用小户型", "夏季新款纯棉短袖T恤男士宽松圆领上衣"],
                     "caption": ["stale", "stale"], "drop_reason": ["", ""]})
    io.write_parquet(rows, str(tmp_path / "in.parquet"))
    cfg = json.dumps({"root": str(tmp_path / "data")})
    assert _cli(capsys, "--config", cfg, "refine", str(tmp_path / "in.parquet"), "--out", str(tmp_path / "r1"))[0] == 0
    first = pq.read_table(tmp_path / "r1.parquet")
    assert first.column_names.count("caption") == 1 and "stale" not in first["caption"].to_pylist()
    assert _cli(capsys, "--config", cfg, "refine", str(tmp_path / "r1.parquet"), "--out", str(tmp_path / "r2"))[0] == 0
    assert pq.read_table(tmp_path / "r2.parquet").column_names == first.column_names


def test_an_empty_warc_is_said_not_silent(capsys, tmp_path, caplog):
    (tmp_path / "empty.warc.gz").write_bytes(b"")
    code, out, _ = _cli(capsys, "extract", str(tmp_path / "empty.warc.gz"), "--out", str(tmp_path / "o.parquet"))
    assert code == 0 and json.loads(out)["total"] == 0
    assert "empty.warc.gz: the file is empty (warc_empty)" in caplog.text
    stats = json.loads((tmp_path / "o_stats.json").read_text())["stats"]
    assert stats["errors"] == {"warc_empty": 1}


def test_the_installed_command_exits_2_without_a_traceback(tmp_path):
    run = subprocess.run([sys.executable, "-m", "danqing.cli", "extract", str(tmp_path / "nope.warc.gz"), "--out",
                          str(tmp_path / "o.parquet")], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.strip() == f"danqing: error: {tmp_path / 'nope.warc.gz'}: No such file or directory"


def test_a_killed_writes_temp_file_goes_with_the_next_run(tmp_path):
    """kill -9 during extract leaves OUT.parquet.tmp-*; the rerun removes it and writes the output."""
    warc = tmp_path / "big.warc.gz"
    warc.write_bytes(b"".join(members(cc_records(6000))))
    out = tmp_path / "out" / "pairs"
    command = [sys.executable, "-m", "danqing.cli", "extract", str(warc), "--out", str(out)]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(out.parent.glob("pairs.parquet.tmp-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    [left] = list(out.parent.glob("pairs.parquet.tmp-*"))  # what a killed write leaves
    assert not (out.parent / "pairs.parquet").exists()
    assert subprocess.run(command, cwd=ROOT, capture_output=True, timeout=120).returncode == 0
    assert not left.exists() and list(out.parent.glob("*.tmp-*")) == []
    assert pq.read_table(f"{out}.parquet").num_rows == 6000
