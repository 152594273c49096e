"""`samfx annotate`'s server over real HTTP (uvicorn on a loopback port, httpx): the token on every request,
paths only inside the allowed folders, bounded uploads, sessions isolated from each other, and a server
error that reaches the page without changing the session or saved files."""
from __future__ import annotations

import os

import httpx
import numpy as np
import pytest

from tests.test_annotate_support import CINE_ITEM, lv_center, server, synthetic_cine, train_clickable
from tests.test_annotate_support import load as load_run


@pytest.fixture(scope="module")
def run(plugins, tmp_path_factory):
    return load_run(train_clickable(tmp_path_factory.mktemp("annotate"), plugins), plugins)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("root")
    synthetic_cine(folder)
    return folder


@pytest.fixture
def live(run, root):
    srv = server(run, root, upload_mb=0.01)
    yield srv
    srv.stop()


def client(live, token: str | None = "good") -> httpx.Client:
    headers = {"x-samfx-token": live.server.token if token == "good" else token} if token else {}
    return httpx.Client(base_url=live.base, headers=headers, timeout=60)


def open_cine(c: httpx.Client) -> str:
    res = c.post("/api/sessions", json={"path": "cine.h5", "item": CINE_ITEM})
    assert res.status_code == 200, res.text
    return res.json()["session"]


def test_every_request_needs_the_token(live):
    paths = ["/", "/static/app.js", "/api/info", "/api/files", f"/api/sessions/{'0' * 32}"]
    for c in (client(live, None), client(live, "wrong-token")):
        for path in paths:
            res = c.get(path)
            assert res.status_code == 403 and "token" in res.json()["error"], (path, res.text)
        assert c.post("/api/sessions", json={"path": "cine.h5"}).status_code == 403
        assert c.post("/api/upload?name=a.png", content=b"x").status_code == 403
    assert not list(live.server.sessions)                     # nothing was opened without the token
    with httpx.Client(base_url=live.base, timeout=60) as browser:
        first = browser.get(f"/?token={live.server.token}")   # the printed URL: sets the cookie
        assert first.status_code == 200 and "samfx annotate" in first.text
        assert "HttpOnly" in first.headers["set-cookie"] and "SameSite=Strict" in first.headers["set-cookie"]
        assert browser.get("/api/info").status_code == 200    # then the cookie alone
    assert client(live).get("/api/info").json()["class_names"] == ["LV", "MYO", "LA"]   # or the header


def test_paths_outside_the_allowed_folders_are_refused(live, root, tmp_path):
    secret = tmp_path / "secret.png"
    from PIL import Image

    Image.fromarray(np.zeros((40, 40), np.uint8)).save(secret)
    (root / "link.png").symlink_to(secret)
    (root / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    c = client(live)
    for path in ("../secret.png", str(secret), "link.png", "linkdir/secret.png", f"{root}/../{tmp_path.name}"):
        res = c.post("/api/sessions", json={"path": path})
        assert res.status_code == 403 and "outside the allowed folders" in res.json()["error"], (path, res.text)
    assert c.get("/api/files", params={"dir": ".."}).status_code == 403
    names = [e["name"] for e in c.get("/api/files").json()["entries"]]
    assert "cine.h5" in names and "link.png" not in names and "linkdir" not in names
    sid = open_cine(c)
    c.post(f"/api/sessions/{sid}/op", json={"op": "automatic", "t": 0}).raise_for_status()
    for body in ({"folder": "../out"}, {"folder": str(tmp_path)}, {"folder": "linkdir"},
                 {"folder": "out", "store": "../stolen.h5"}):
        res = c.post(f"/api/sessions/{sid}/save", json=body)
        assert res.status_code == 403, (body, res.text)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret.png"] and not (root.parent / "stolen.h5").exists()
    assert c.get("/static/..%2f__init__.py").status_code in (403, 404)


def test_uploads_are_bounded(live):
    c = client(live)
    big = os.urandom(20_000)                                  # the fixture's limit is 0.01 MB
    res = c.post("/api/upload?name=big.png", content=big)
    assert res.status_code == 413 and "limit" in res.json()["error"], res.text

    def chunks():                                             # no Content-Length: counted while streaming
        for _ in range(5):
            yield big[:4000]

    res = c.post("/api/upload?name=big.png", content=chunks())
    assert res.status_code == 413, res.text
    assert not live.server.uploads or not any(live.server.uploads.iterdir())
    assert c.post("/api/upload?name=../x.png", content=b"x").status_code == 400
    from io import BytesIO

    from PIL import Image

    buf = BytesIO()
    Image.fromarray((np.arange(40 * 48).reshape(40, 48) % 255).astype(np.uint8)).save(buf, format="PNG")
    up = c.post("/api/upload?name=small.png", content=buf.getvalue())
    assert up.status_code == 200, up.text
    opened = c.post("/api/sessions", json={"path": up.json()["path"]})
    assert opened.status_code == 200 and opened.json()["state"]["frames"] == 1
    assert c.post("/api/sessions", json={"path": "cine.h5"}, content=b"x" * 5_000_000).status_code == 413


def test_two_sessions_are_isolated(live, root):
    a, b = client(live), client(live)
    sa, sb = open_cine(a), open_cine(b)
    assert sa != sb and len(sa) == 32
    x, y = lv_center(root / "cine.h5")
    res = a.post(f"/api/sessions/{sa}/op", json={"op": "click", "t": 0, "cls": 1, "x": x, "y": y})
    assert res.status_code == 200 and res.json()["result"] == {"frames": [0]}
    labels_a = np.frombuffer(a.get(f"/api/sessions/{sa}/labels").content, np.uint8)
    labels_b = np.frombuffer(b.get(f"/api/sessions/{sb}/labels").content, np.uint8)
    assert labels_a.any() and not labels_b.any()
    b.post(f"/api/sessions/{sb}/op", json={"op": "brush", "t": 2, "cls": 2, "radius": 3, "points": [[5, 5]]})
    assert a.get(f"/api/sessions/{sb}/prompts/0").json() == []      # B has no clicks of A's
    assert a.get(f"/api/sessions/{sa}/prompts/0").json()[0]["points"] == [[x, y, 1]]
    assert np.array_equal(np.frombuffer(a.get(f"/api/sessions/{sa}/labels").content, np.uint8), labels_a)
    assert a.get(f"/api/sessions/{'f' * 32}").status_code == 404
    assert b.delete(f"/api/sessions/{sb}").status_code == 200
    assert a.get(f"/api/sessions/{sb}").status_code == 404 and a.get(f"/api/sessions/{sa}").status_code == 200
    ids = [k for k in live.server.cache._items if k[0] == sb]
    assert ids == []                                            # B's cached features went with it


def test_a_server_error_reaches_the_page_and_changes_nothing(live, root, monkeypatch):
    c = client(live)
    sid = open_cine(c)
    x, y = lv_center(root / "cine.h5")
    c.post(f"/api/sessions/{sid}/op", json={"op": "click", "t": 0, "cls": 1, "x": x, "y": y}).raise_for_status()
    saved = c.post(f"/api/sessions/{sid}/save", json={"folder": "saved", "formats": ["nifti", "json"]}).json()
    before = (root / "saved" / f"cine-{CINE_ITEM}_label.nii.gz").read_bytes()
    labels = c.get(f"/api/sessions/{sid}/labels").content
    state = c.get(f"/api/sessions/{sid}").json()

    def broken(*args, **kwargs):
        raise RuntimeError("planted failure")

    monkeypatch.setattr(live.server.ops, "propagate", broken)
    res = c.post(f"/api/sessions/{sid}/op", json={"op": "propagate", "t": 0})
    assert res.status_code == 500 and "planted failure" in res.json()["error"]
    assert "session is as it was" in res.json()["error"]
    assert c.get(f"/api/sessions/{sid}/labels").content == labels
    assert c.get(f"/api/sessions/{sid}").json() == state
    assert (root / "saved" / f"cine-{CINE_ITEM}_label.nii.gz").read_bytes() == before and saved["nifti"]
    assert c.post(f"/api/sessions/{sid}/op", json={"op": "click", "t": 99, "cls": 1, "x": 1, "y": 1}).json() == {
        "error": "operation 'click': frame 99 is outside 0..5"}
    assert c.post(f"/api/sessions/{sid}/op", json={"op": "click", "t": 0, "cls": 7, "x": 1, "y": 1}).status_code == 400
