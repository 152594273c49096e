"""`samfx annotate` in a real browser: headless Debian chromium driven by Selenium (chromium-driver) clicks
inside the LV of a synthetic cine with real mouse events on the canvas, propagates, corrects a frame and
re-propagates; every frame's masks in the page must equal what the Python session API gives for the same
clicks. Then it saves a store, trains one step on it, and checks that a screenshot is not blank.
Skipped, saying why, without chromium, chromium-driver or selenium (.ci/run installs them)."""
from __future__ import annotations

import io
import shutil
import time

import numpy as np
import pytest

from samfx.deploy.annotate.loops import open_loop
from samfx.deploy.annotate.modelops import ModelOps
from samfx.deploy.annotate.session import AnnotationSession
from tests.test_annotate_support import CINE_ITEM, load, lv_center, server, synthetic_cine, train_clickable
from tests.toy_runs import train_toy

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
try:
    import selenium  # noqa: F401
    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False
WHY = ("the annotate browser test needs Debian's `chromium` and `chromium-driver` (apt-get install -y chromium "
       "chromium-driver; .ci/run installs them) and selenium (the test extra)")
pytestmark = pytest.mark.skipif(not (CHROMIUM and DRIVER and HAVE_SELENIUM), reason=WHY)


@pytest.fixture(scope="module")
def run_dir(plugins, tmp_path_factory):
    return train_clickable(tmp_path_factory.mktemp("annotate"), plugins)


@pytest.fixture
def driver(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1200,1000", f"--user-data-dir={tmp_path / 'profile'}", "--force-device-scale-factor=1"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    drv.set_script_timeout(60)
    yield drv
    drv.quit()


def settle(drv, ops: int | None = None, timeout: float = 120.0) -> None:
    """Wait until the page has no request in flight (and has applied `ops` operations); fail on its error."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        body = drv.find_element("tag name", "body")
        error = body.get_attribute("data-error")
        assert not error, f"the page shows an error: {error}"
        if body.get_attribute("data-busy") == "0" and body.get_attribute("data-ready") == "1" and (
                ops is None or body.get_attribute("data-ops") == str(ops)):
            return
        time.sleep(0.05)
    raise AssertionError(f"the page did not settle (ops {ops}) in {timeout} s")


def canvas_click(drv, x: float, y: float, shift: bool = False) -> None:
    """A real mouse click on the canvas at image pixel (x, y)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    canvas = drv.find_element("id", "canvas")
    w, h = drv.execute_script("return [S.st.width, S.st.height]")
    size = canvas.size
    dx = (x + 0.5) * size["width"] / w - size["width"] / 2
    dy = (y + 0.5) * size["height"] / h - size["height"] / 2
    chain = ActionChains(drv).move_to_element_with_offset(canvas, round(dx), round(dy))
    if shift:
        chain = chain.key_down(Keys.SHIFT).click().key_up(Keys.SHIFT)
    else:
        chain = chain.click()
    chain.perform()


def page_labels(drv) -> np.ndarray:
    t, h, w = drv.execute_script("return [S.st.frames, S.st.height, S.st.width]")
    flat = drv.execute_script("return Array.from(S.labels)")
    return np.asarray(flat, np.uint8).reshape(t, h, w)


def test_annotate_a_cine_in_chromium_matches_the_session_api(run_dir, plugins, tmp_path, driver):
    from PIL import Image
    from selenium.webdriver.common.keys import Keys

    from samfx.data.store import read_index

    root = tmp_path / "root"
    root.mkdir()
    store = synthetic_cine(root)
    run = load(run_dir, plugins)
    live = server(run, root)
    try:
        driver.get(live.url)
        driver.find_element("id", "path").send_keys("cine.h5")
        item = driver.find_element("id", "item")
        item.clear()
        item.send_keys(CINE_ITEM)
        driver.find_element("id", "openbtn").click()
        settle(driver, 0)
        x, y = lv_center(store)
        canvas_click(driver, x, y)
        settle(driver, 1)
        driver.find_element("id", "propfwd").click()
        settle(driver, 2)
        sid = next(iter(live.server.sessions))
        ops = live.server.sessions[sid].log
        assert [o["op"] for o in ops] == ["click", "propagate"] and ops[0]["cls"] == 1 and ops[0]["t"] == 0
        assert abs(ops[0]["x"] - x) <= 1 and abs(ops[0]["y"] - y) <= 1       # where the mouse clicked

        reference = AnnotationSession(ModelOps(run), open_loop(store, CINE_ITEM), precompute=False)
        reference.replay([{k: v for k, v in o.items()} for o in ops])
        shown = page_labels(driver)
        assert (shown[0] == 1).any() and (shown[1:] == 1).any()
        for t in range(shown.shape[0]):
            assert np.array_equal(shown[t] == 1, reference.labels[t] == 1), f"LV of frame {t}"
        assert np.array_equal(shown, reference.labels)
        driver.refresh()                                    # a reload finds the tab's session again
        settle(driver, 2)
        assert np.array_equal(page_labels(driver), reference.labels) and list(live.server.sessions) == [sid]

        body = driver.find_element("tag name", "body")
        for _ in range(3):                                  # frame 3 with the keyboard, a negative click, re-propagate
            body.send_keys(Keys.ARROW_RIGHT)
            settle(driver)
        assert driver.execute_script("return S.t") == 3
        canvas_click(driver, x + 6, y, shift=True)
        settle(driver, 3)
        body.send_keys("p")
        settle(driver, 4)
        ops = live.server.sessions[sid].log
        assert [o["op"] for o in ops[2:]] == ["click", "propagate"] and ops[2]["positive"] is False
        assert ops[2]["t"] == 3 and ops[3]["t"] == 3
        reference.replay(ops[2:])
        assert np.array_equal(page_labels(driver), reference.labels)

        driver.find_element("id", "savestore").send_keys("annotated.h5")
        driver.find_element("id", "save").click()
        settle(driver)
        assert "annotated.h5" in driver.find_element("id", "saved").text
        shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("L"))
        assert shot.std() > 20 and shot.shape[0] > 500                     # not a blank page

        before = page_labels(driver)
        driver.execute_script("S.sid = S.sid.replace(/./g, '0')")         # a session the server does not know
        body.send_keys("a")
        end = time.monotonic() + 60
        while not driver.find_element("tag name", "body").get_attribute("data-error") and time.monotonic() < end:
            time.sleep(0.05)
        banner = driver.find_element("id", "error")
        assert banner.is_displayed() and "no session" in banner.text, banner.text   # the server's error, shown
        assert np.array_equal(page_labels(driver), before) and len(live.server.sessions[sid].log) == 4
    finally:
        live.stop()
    index = read_index(root / "annotated.h5")
    assert list(index.items) == [f"cine-{CINE_ITEM}"] and index.items[f"cine-{CINE_ITEM}"].labeled == (True,) * 6
    trained = train_toy(tmp_path / "retrained", plugins, "train.stages.0.max_steps=1", "train.stages.0.epochs=1",
                        f"data.source={{name: h5, path: {root / 'annotated.h5'}}}", "data.val_split=train",
                        "data.batch_size=1")
    assert (trained / "last.pt").is_file()
