"""`vop app` in a real headless browser (Debian's chromium + chromedriver, driven by selenium)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from search_fixtures import checkpoint_fixture, video_folder_fixture  # noqa: F401  (fixtures)

from peft_vop.search import VideoIndex


REPO = Path(__file__).parents[2]
pytestmark = pytest.mark.slow
INSTALL = "apt-get install -y chromium chromium-driver && pip install selenium gradio"


def browser():
    """A headless chromium; a machine without one fails this test with the command that installs it."""
    try:
        from selenium import webdriver
    except ImportError:
        pytest.fail(f"The search page test needs selenium and a headless chromium: {INSTALL}")
    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver = shutil.which("chromedriver") or (
        "/usr/bin/chromedriver" if os.path.exists("/usr/bin/chromedriver") else None
    )
    if binary is None or driver is None:
        pytest.fail(f"The search page test needs chromium and chromedriver (found {binary}, {driver}): {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1400"):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(video_folder, tmp_path, checkpoint):
    import gradio  # noqa: F401  (the `app` extra; the `dev` extra installs it, so a missing one fails here)

    index = VideoIndex.build(
        video_folder, tmp_path / "index", model=checkpoint, num_frames=3, window=4, stride=3, progress=False
    )
    port = free_port()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "peft_vop.cli.main", "app", str(tmp_path / "index"), "--port", str(port)]
    log = open(tmp_path / "app.log", "w")  # noqa: SIM115  (closed below)
    process = subprocess.Popen([*command, "--device", "cpu"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (tmp_path / "app.log").read_text()
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "the page did not come up in 120 s"
                time.sleep(0.5)
        yield url, index
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def run_query(driver, wait, query: str, expected: int, heading: str) -> list:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, "#query textarea, #query input")
    box.clear()
    box.send_keys(query)
    driver.find_element(By.CSS_SELECTOR, "#search").click()
    wait.until(lambda d: f"{expected} results for {heading}" in d.find_element(By.ID, "results").text)
    hits = driver.find_elements(By.CSS_SELECTOR, "#results .hit")
    assert len(hits) == expected
    # Every thumbnail has loaded (a broken image has naturalWidth 0).
    wait.until(
        lambda d: all(
            d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 0
            for image in d.find_elements(By.CSS_SELECTOR, "#results .hit img.thumb")
        )
    )
    assert len(driver.find_elements(By.CSS_SELECTOR, "#results .hit img.thumb")) == expected
    return hits


def test_the_search_page_in_a_headless_browser(server, video_folder, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, index = server
    driver = browser()
    try:
        wait = WebDriverWait(driver, 60)
        driver.get(url)
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#query textarea, #query input"))
        count = driver.find_element(By.CSS_SELECTOR, "#count input")
        count.clear()
        count.send_keys("3")

        query = "a man rides a bike down a hill"
        hits = run_query(driver, wait, query, expected=3, heading=f'"{query}"')
        expected = [hit.entry for hit in index.search(text="a man rides a bike down a hill", k=3)]
        for hit, entry in zip(hits, expected):
            assert entry.id in hit.text and f"[{entry.start:.1f}s - {entry.end:.1f}s]" in hit.text
        # Each hit plays its own segment of the file, which the server serves as video.
        sources = [hit.find_element(By.TAG_NAME, "video").get_attribute("src") for hit in hits]
        for source, entry in zip(sources, expected):
            assert source.endswith(f"#t={entry.start:g},{entry.end:g}")
            with urllib.request.urlopen(source.split("#")[0], timeout=10) as response:
                assert response.status == 200 and response.headers["Content-Type"] == "video/mp4"
        screenshot = os.environ.get("VOP_SEARCH_SCREENSHOT", str(tmp_path / "search-page.png"))
        driver.save_screenshot(screenshot)
        assert os.path.getsize(screenshot) > 10_000

        # video -> video: the query video's own windows come first.
        driver.find_element(By.CSS_SELECTOR, "#video-mode input").click()
        query = str(video_folder / "carphone_distorted.mp4")
        hits = run_query(driver, wait, query, expected=3, heading="videos like carphone_distorted.mp4")
        assert "carphone_distorted.mp4" in hits[0].text
    finally:
        driver.quit()
