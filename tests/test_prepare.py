"""Install-time preparation (`python -m deepclust.prepare`): its jobs, their report, its module list."""

from __future__ import annotations

import pytest

from deepclust import prepare


def test_module_list_covers_the_package_without_main():
    names = prepare.deepclust_modules()
    assert {"deepclust.cli", "deepclust.prepare", "deepclust.cluster.heads.training",
            "deepclust.encoders.engine"} <= set(names)
    assert not [n for n in names if n.endswith("__main__")]


def test_jobs_run_side_by_side_with_bytecode_writing_allowed(monkeypatch, capsys):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    check = "import os, sys; sys.exit(5 if 'PYTHONDONTWRITEBYTECODE' in os.environ else 0)"
    monkeypatch.setattr(prepare, "JOBS", {"a": check, "b": "pass"})
    assert prepare.main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("prepare: a ") and ", b " in out


def test_a_failed_job_is_one_line_and_exit_status_1(monkeypatch, capsys):
    monkeypatch.setattr(prepare, "JOBS", {"ok": "pass",
                                          "bad": "raise RuntimeError('no numba here')"})
    assert prepare.main([]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "bad failed (RuntimeError: no numba here)" in err and "first run compiles" in err


@pytest.mark.parametrize("argv", [["nope"], ["bytecode", "nope"]])
def test_unknown_job_is_refused(argv, capsys):
    assert prepare.main(argv) == 2
    assert "unknown job 'nope'" in capsys.readouterr().err
