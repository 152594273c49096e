"""`samfx annotate` on the command line: the URL with its token, the warning off loopback, the checks
before anything is served (an ONNX model, a missing --root, a file outside it), one-line errors."""
from __future__ import annotations

import re

import pytest

from tests.test_annotate_support import synthetic_cine, train_clickable


@pytest.fixture(scope="module")
def run_dir(plugins, tmp_path_factory):
    return train_clickable(tmp_path_factory.mktemp("annotate"), plugins)


@pytest.fixture
def served(monkeypatch):
    """Replaces uvicorn's server: records what would be served instead of blocking."""
    from samfx.deploy.annotate import serve

    seen = {}

    class Fake:
        def __init__(self, server):
            seen["server"] = server

        def run(self, sockets):
            seen["address"] = sockets[0].getsockname()

    monkeypatch.setattr(serve, "make_uvicorn", lambda server, log_level="warning": Fake(server))
    return seen


def test_annotate_prints_a_tokened_loopback_url(cli, run_dir, tmp_path, served):
    synthetic_cine(tmp_path)
    res = cli("annotate", run_dir, "cine.h5", "--root", tmp_path, "--port", "0")
    assert res.exit_code == 0, res.output
    url = re.search(r"open (http://127\.0\.0\.1:(\d+)/\?token=(\S+))", res.output)
    assert url, res.output
    server = served["server"]
    assert url.group(3) == server.token and len(server.token) >= 32 and int(url.group(2)) == served["address"][1]
    assert served["address"][0] == "127.0.0.1" and server.files == ["cine.h5"]
    assert "warning" not in res.output
    assert server.roots.folders == [tmp_path.resolve()] and not server.sessions


def test_annotate_warns_off_loopback_and_each_start_has_its_own_token(cli, run_dir, tmp_path, served):
    res = cli("annotate", run_dir, "--root", tmp_path, "--host", "0.0.0.0", "--port", "0")
    assert res.exit_code == 0, res.output
    assert "warning: listening on 0.0.0.0, not loopback" in res.output and "token" in res.output
    first = served["server"].token
    assert cli("annotate", run_dir, "--root", tmp_path, "--port", "0").exit_code == 0
    assert served["server"].token != first


def test_annotate_refuses_bad_starts_in_one_line(cli, run_dir, tmp_path, served):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "x.png").write_bytes(b"")
    inside = tmp_path / "inside"
    inside.mkdir()
    for args, words in ((["model.onnx"], "annotate needs the torch model"),
                        ([run_dir, "--root", tmp_path / "nope"], "is not a folder"),
                        ([run_dir, str(outside / "x.png"), "--root", inside], "outside the allowed folders"),
                        ([run_dir, "missing.png", "--root", inside], "not found")):
        res = cli("annotate", *args)
        assert res.exit_code == 2, res.output
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.output
    assert "server" not in served
