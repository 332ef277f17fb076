"""An unexpected exception: one line without --debug, the traceback with it."""

from __future__ import annotations

import pytest

from runtime import cli, container


def _boom(*_a, **_kw):
    raise ZeroDivisionError("boom")


def test_internal_error_is_one_line_without_debug(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(container, "query", _boom)
    assert cli.main(["--root", str(tmp_path), "state", "x"]) == 1
    err = capsys.readouterr().err
    assert err == "onggi: internal error: ZeroDivisionError: boom\n"


def test_debug_lets_the_traceback_through(monkeypatch, tmp_path):
    monkeypatch.setattr(container, "query", _boom)
    with pytest.raises(ZeroDivisionError):
        cli.main(["--debug", "--root", str(tmp_path), "state", "x"])


def test_argparse_errors_name_the_verb_once(capsys):
    assert cli.main(["--log-format", "xml", "list"]) == 1  # runc's words and status
    assert capsys.readouterr().err == "onggi: invalid log-format: xml\n"
    assert cli.main(["list", "--bogus"]) == 2
    assert capsys.readouterr().err.startswith("onggi: list: unrecognized arguments: --bogus")
