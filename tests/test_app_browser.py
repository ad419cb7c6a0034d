"""The page in a real browser: Debian's headless Chromium driven by Selenium (chromium-driver; no
browser is downloaded). Load the page, upload the bundled photo and painting, see the painting, move
the strength slider, start and stop a refine, download a refine's PNG and compare it with the Python
API's result for the same settings, upload a bad file and read the message. Each step's screenshot is
saved (into $NST_TF_SCREENSHOTS if set, else the test's temporary folder).

`make test` installs Chromium (as root, with apt-get) and sets NST_TF_REQUIRE_BROWSER=1, so these
tests fail rather than skip where the browser is missing."""

import asyncio
import os
import shutil
import threading
import time

import numpy as np
import pytest
from PIL import Image

import nst_tf
from conftest import REPO
from nst_tf import image_io

pytestmark = pytest.mark.slow
REQUIRED = os.environ.get("NST_TF_REQUIRE_BROWSER") == "1"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
TFJS = os.environ.get("NST_TF_TFJS_DIR") or os.path.join(REPO, "tfjs")  # make tfjs writes it


def _missing(what):
    (pytest.fail if REQUIRED else pytest.skip)(f"{what} (apt-get install chromium chromium-driver; make test does)")


try:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait
except ImportError:  # pragma: no cover - the test extra installs it
    webdriver = None


@pytest.fixture(scope="module")
def site():
    """The app on a free port of 127.0.0.1, served from a thread; yields its address."""
    if webdriver is None:
        _missing("selenium is not installed")
    from aiohttp import web

    from nst_tf.app import server, studio

    painter = studio.Studio("demo", weights="embedded", autotune="off")  # make tfjs exports the same painter
    loop = asyncio.new_event_loop()
    tfjs = TFJS if os.path.isfile(os.path.join(TFJS, "tf.min.js")) else None
    runner = web.AppRunner(server.make_app(painter, tfjs_dir=tfjs))
    loop.run_until_complete(runner.setup())
    site_ = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site_.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)


@pytest.fixture
def browser(tmp_path):
    if not (CHROMIUM and DRIVER):
        _missing("Chromium or its driver is not installed")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--use-fake-device-for-media-stream",  # Chromium's own test camera, no permission prompt
        "--use-fake-ui-for-media-stream",
    ):
        options.add_argument(arg)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    yield driver
    driver.quit()


@pytest.fixture
def shots(tmp_path):
    folder = os.environ.get("NST_TF_SCREENSHOTS") or str(tmp_path / "screenshots")
    os.makedirs(folder, exist_ok=True)
    return lambda driver, name: driver.save_screenshot(os.path.join(folder, f"{name}.png"))


def _until(driver, condition, seconds=120):
    """Waits for `condition(driver)`; on a timeout, says what the page said."""
    from selenium.common.exceptions import TimeoutException

    try:
        return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: condition(d))
    except TimeoutException:
        said = {i: driver.find_element(By.ID, i).text for i in ("status", "message")}
        raise AssertionError(f"the page did not get there in {seconds} s; it says {said}") from None


def _data(driver, id_, key):
    return driver.execute_script(f"return document.getElementById('{id_}').dataset['{key}'] || null")


def test_the_page_paints_refines_stops_downloads_and_refuses_a_bad_file(site, browser, shots, tmp_path):
    photo, painting = image_io.example_path("boston"), image_io.example_path("the_scream")
    browser.get(site)
    _until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#painting-bundled button")) == 3)
    shots(browser, "1-loaded")
    Select(browser.find_element(By.ID, "size")).select_by_visible_text("256")
    browser.find_element(By.ID, "photo-input").send_keys(photo)
    browser.find_element(By.ID, "painting-input").send_keys(painting)
    _until(browser, lambda d: _data(d, "result", "version"))
    first_ms = int(_data(browser, "result", "paintMs"))
    first_src = browser.find_element(By.ID, "result").get_attribute("src")
    shots(browser, "2-painted")

    slider = browser.find_element(By.ID, "strength")
    slider.click()  # the middle of the slider: 0.5
    slider.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    _until(browser, lambda d: d.find_element(By.ID, "strength").get_attribute("value") == "0.7")
    _until(browser, lambda d: d.find_element(By.ID, "result").get_attribute("src") != first_src)
    _until(browser, lambda d: "--strength=0.7" in d.find_element(By.ID, "command").text)
    shots(browser, "3-strength")

    steps = browser.find_element(By.ID, "steps")
    steps.clear()
    steps.send_keys("200")
    browser.find_element(By.ID, "refine").click()
    _until(browser, lambda d: int(_data(d, "status", "step") or 0) >= 3)
    shots(browser, "4-refining")
    browser.find_element(By.ID, "stop").click()
    _until(browser, lambda d: _data(d, "status", "finished") == "stopped")
    stopped_at = int(browser.find_element(By.ID, "status").text.split()[-1])
    assert 3 <= stopped_at < 200
    shots(browser, "5-stopped")

    steps.clear()
    steps.send_keys("5")
    browser.execute_script("document.getElementById('status').dataset.finished = ''")
    _until(browser, lambda d: d.find_element(By.ID, "refine").is_enabled())
    browser.find_element(By.ID, "refine").click()
    _until(browser, lambda d: _data(d, "status", "finished") == "done")
    command = browser.find_element(By.ID, "command").text
    assert "--steps=5" in command and "--strength=0.7" in command and "--init=network" in command, command
    browser.find_element(By.ID, "download").click()
    saved = browser.downloads / "painted.png"
    _until(browser, lambda d: saved.exists() and saved.stat().st_size > 0, 30)
    time.sleep(0.2)
    shots(browser, "6-refined")
    got = np.asarray(Image.open(saved).convert("RGB")).astype(int)
    expected = nst_tf.stylize(
        photo,
        painting,
        network="demo",
        init="network",
        size=256,
        scales=1,
        steps=5,
        strength=0.7,
        weights="embedded",
        precision="float32",
    ).astype(int)
    assert got.shape == expected.shape and np.abs(got - expected).mean() < 0.5, np.abs(got - expected).mean()

    browser.find_element(By.ID, "budget").send_keys("2")  # the Time control: steps until 2 s have passed
    browser.execute_script("document.getElementById('status').dataset.finished = ''")
    browser.find_element(By.ID, "refine").click()
    _until(browser, lambda d: _data(d, "status", "finished") == "done")
    bought = int(browser.find_element(By.ID, "status").text.split("(")[1].split()[0])  # "refined (N step[s])"
    assert bought >= 1 and f"--steps={bought}" in browser.find_element(By.ID, "command").text
    shots(browser, "6b-refined-for-a-time")

    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    browser.find_element(By.ID, "photo-input").send_keys(str(bad))
    _until(browser, lambda d: "is not an image" in d.find_element(By.ID, "message").text)
    shots(browser, "7-bad-file")
    print(f"drop to painting: {first_ms} ms (256 px, float32)")


def test_the_page_paints_in_the_browser_with_tensorflow_js_and_the_webcam_live(site, browser, shots):
    """The TensorFlow.js pair (make tfjs) paints on the user's machine: the same picture as the
    server's painting up to the float16 weights and the browser's resizing; then the webcam, live."""
    if not os.path.isfile(os.path.join(TFJS, "tf.min.js")):
        _missing(f"no TensorFlow.js export in {TFJS} (make tfjs)")
    photo, painting = image_io.example_path("boston"), image_io.example_path("the_scream")
    browser.get(site)
    _until(browser, lambda d: d.find_element(By.ID, "browser-row").is_displayed())
    Select(browser.find_element(By.ID, "size")).select_by_visible_text("512")
    browser.find_element(By.ID, "photo-input").send_keys(photo)
    browser.find_element(By.ID, "painting-input").send_keys(painting)
    _until(browser, lambda d: _data(d, "result", "version"))
    server_picture = _picture(browser)
    timings, pictures = [], []
    for control in ("in-browser", "strength"):  # the first painting loads the models; the second is warm
        version = _data(browser, "result", "version")
        browser.find_element(By.ID, control).click()  # the checkbox; then the slider's middle (0.5)

        def painted(d):
            return _data(d, "result", "version") != version and "this browser" in d.find_element(By.ID, "status").text

        _until(browser, painted, 300)
        timings.append(int(_data(browser, "result", "paintMs")))
        pictures.append(_picture(browser))
    assert not browser.find_element(By.ID, "message").text
    shots(browser, "8-in-browser")
    status = browser.find_element(By.ID, "status").text
    local = pictures[0]  # at the server painting's strength (1)
    assert local.shape == server_picture.shape, (local.shape, server_picture.shape)
    difference = np.abs(local.astype(float) - server_picture.astype(float)).mean() / 255
    softer = np.abs(pictures[1].astype(float) - server_picture.astype(float)).mean() / 255
    print(
        f"in-browser painting at 512 px: first {timings[0]} ms, warm {timings[1]} ms ({status}); "
        f"mean difference from the server's {difference:.4f} (at strength 0.5: {softer:.4f})"
    )
    assert difference < 0.045 and difference < 0.6 * softer, (difference, softer)

    # Live: the webcam (Chromium's fake camera) painted frame by frame by the same pair, the painting's
    # vector computed once; frames per second shown.
    Select(browser.find_element(By.ID, "size")).select_by_visible_text("256")
    browser.find_element(By.ID, "live").click()
    _until(browser, lambda d: int(_data(d, "live-canvas", "frames") or 0) >= 5, 300)
    fps = float(_data(browser, "live-canvas", "fps"))
    status = browser.find_element(By.ID, "status").text
    assert not browser.find_element(By.ID, "message").text and "live:" in status and fps > 0
    pixels = _canvas(browser, "live-canvas")
    assert pixels.shape[1] == 256 and pixels.std() > 10  # a painted frame, not a blank canvas
    shots(browser, "12-live")
    print(f"live webcam in the browser: {fps:.2f} frames/s ({status})")
    browser.find_element(By.ID, "live").click()
    _until(browser, lambda d: not d.find_element(By.ID, "live-canvas").is_displayed())


def _picture(browser) -> np.ndarray:
    """The page's result picture, as the browser decoded it (drawn to a canvas)."""
    import base64
    import io

    data = browser.execute_script(
        "const img = document.getElementById('result'), c = document.createElement('canvas');"
        "c.width = img.naturalWidth; c.height = img.naturalHeight; c.getContext('2d').drawImage(img, 0, 0);"
        "return c.toDataURL('image/png');"
    )
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB"))


def test_the_page_loads_clean_fits_a_narrow_screen_and_recovers_from_a_bad_file(site, browser, shots, tmp_path):
    """At load: no broken picture and no empty command box; the chosen bundled photo is marked; at 420 px
    wide the controls and the result stay on screen (one column); a bad upload clears the old result and
    keeps the photo that painted; the command line names the files as they were picked. (The other
    tests look at the page 1400 px wide.)"""
    width = 420
    browser.set_window_size(width, 900)
    browser.get(site)
    _until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#photo-bundled button")) >= 1)
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert not browser.find_element(By.ID, "command").is_displayed()
    assert browser.find_element(By.ID, "placeholder").is_displayed()
    shots(browser, f"9-loaded-{width}")
    photo_button = browser.find_element(By.CSS_SELECTOR, "#photo-bundled button")
    photo_button.click()
    assert "chosen" in photo_button.get_attribute("class")
    browser.find_element(By.ID, "painting-input").send_keys(image_io.example_path("shipwreck"))
    _until(browser, lambda d: _data(d, "result", "version"))
    command = browser.find_element(By.ID, "command").text
    assert f"--content={photo_button.get_attribute('title')}.jpg" in command and "--style=shipwreck.jpg" in command, (
        command
    )
    page_width = browser.execute_script("return document.documentElement.clientWidth")
    for id_ in ("strength", "size", "refine", "result"):
        box = browser.find_element(By.ID, id_).rect
        assert box["x"] >= 0 and box["x"] + box["width"] <= page_width + 1, (id_, box, page_width)
    shots(browser, f"10-painted-{width}")
    good = browser.find_element(By.ID, "photo-preview").get_attribute("src")
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    browser.find_element(By.ID, "photo-input").send_keys(str(bad))
    _until(browser, lambda d: "is not an image" in d.find_element(By.ID, "message").text)
    _until(browser, lambda d: d.find_element(By.ID, "photo-preview").get_attribute("src") == good)
    assert not browser.find_element(By.ID, "result").is_displayed()
    assert not browser.find_element(By.ID, "download").is_displayed()
    shots(browser, f"11-bad-file-{width}")


def _canvas(browser, id_) -> np.ndarray:
    """A canvas's pixels, as the page drew them."""
    import base64
    import io

    data = browser.execute_script(f"return document.getElementById('{id_}').toDataURL('image/png')")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data.split(",", 1)[1]))).convert("RGB"))
