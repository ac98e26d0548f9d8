"""Bad configs and crawl ids, generated from the config's own fields: each is taken within its bounds or
refused with one line naming the field; never another exception, never a path outside the root."""

from __future__ import annotations

import json
import subprocess
import sys
import typing

import pytest
from conftest import ROOT
from pydantic import BaseModel

from danqing import cli, paths
from danqing.config import ConfigError, PipelineConfig

NONSENSE = [-1, -10**9, 10**15, 0, 1.5, "x", "", None, [], {}, True]


def _fields(model: type[BaseModel], prefix: tuple[str, ...] = ()):
    """(path, default) of every leaf field of the config."""
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            yield from _fields(kind, (*prefix, name))
        else:
            yield (*prefix, name), field


def _nest(path: tuple[str, ...], value) -> dict:
    out: typing.Any = value
    for key in reversed(path):
        out = {key: out}
    return out


FIELDS = list(_fields(PipelineConfig))


def test_the_walk_sees_every_section():
    assert {p[0] for p, _ in FIELDS} >= {"source", "extract", "refine", "download", "visual", "score", "dedup",
                                         "align", "publish", "root", "lineage_url"}
    assert len(FIELDS) > 100


@pytest.mark.parametrize(("path", "field"), FIELDS, ids=[".".join(p) for p, _ in FIELDS])
def test_every_field_takes_or_refuses_nonsense_in_one_line(path, field):
    refused = 0
    for value in NONSENSE:
        try:
            cfg = PipelineConfig.from_overrides(_nest(path, value))
        except ConfigError as e:
            message = str(e)
            assert "\n" not in message and ".".join(path[:-1] or path) in message
            refused += 1
            continue
        got = cfg
        for key in path:
            got = getattr(got, key)
        assert got is not None or value is None  # what was taken is what is used
    assert refused, f"{'.'.join(path)} takes every nonsense value"


@pytest.mark.parametrize("overrides", ["[]", '"visual"', "3", "null", '{"visual": [1]}', '{"visual": {"x": 1}}',
                                       '{"download": {"max_pixels": "many"}}', "{broken"])
def test_the_command_refuses_bad_config_files_in_one_line(tmp_path, overrides):
    path = tmp_path / "cfg.json"
    path.write_text(overrides)
    run = subprocess.run([sys.executable, "-m", "danqing.cli", "--config", str(path), "lineage", "CC-MAIN-2025-47"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    assert run.stderr.count("\n") == 1 and run.stderr.startswith("danqing: error: ") and "Traceback" not in run.stderr


HOSTILE_IDS = ["../../victim", "..", ".", "CC-MAIN-2025-47/..", "CC-MAIN-2025-47/../../x", "/etc/passwd",
               "CC-MAIN-2025-47\\..\\x", "CC-MAIN-2025-47%2F..", "CC-MAIN-2025-47 ", " CC-MAIN-2025-47",
               "CC-MAIN-2025-47\n", "CC-MAIN-2025-47\x00", "cc-main-2025-47", "CC-MAIN-２０２５-47", "CC-MAIN-2025-4",
               "CC-MAIN-2025-477", "CC-MAIN-" + "9" * 200, "", "~", "$HOME", "CC-MAIN-2025-47;rm -rf /"]


@pytest.mark.parametrize("bad", HOSTILE_IDS)
def test_hostile_crawl_ids_are_refused_everywhere(tmp_path, bad, capsys):
    with pytest.raises(ValueError, match="CC-MAIN-YYYY-WW"):
        paths.crawl_id(bad)
    for build in (paths.crawl_dir, paths.index_dir, paths.release_dir, paths.released_dir):
        with pytest.raises(ValueError):
            build(str(tmp_path), bad)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--config", json.dumps({"root": str(tmp_path / "r")}), "lineage", bad])
    assert exit_.value.code == 2 and "Traceback" not in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
