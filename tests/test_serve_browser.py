"""The page of `movielab serve` in a real browser: Debian's chromium driven by selenium against
uvicorn on a loopback port. The form comes from /v1/models, Generate streams the text in, the
result is listed with its seed and equals the API's text, Stop hangs up (the server drops the
rows), the genre view draws a bar per genre, and /docs renders with nothing from the network."""

from __future__ import annotations

import shutil
import time

import httpx
import pytest

from movielab.generation import DecodingBatch
from movielab.serve.app import create_app
from movielab.serve.served import load_served
from tests.test_serve_api import OPTIONS, LiveServer, trained_checkpoints, wait_until

webdriver = pytest.importorskip(
    "selenium.webdriver", reason="selenium is not installed (pip install -e '.[dev]')"
)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)",
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1200,1600",
]
PLOT = "A night guard hears trains in the tunnels below the station, and a killer watches the platform."


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    models = load_served(trained_checkpoints(tmp_path_factory.getbasetemp() / "serve_models"), max_batch=8)
    with LiveServer(create_app(models, OPTIONS)) as live:
        yield live, models
    for model in models.values():
        if model.scheduler is not None:
            model.scheduler.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [*FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def wait(driver, condition, seconds: float = 30):
    return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: condition(d))


def _paced(advance, seconds: float):
    """A decoding step that takes at least `seconds` (the texts stay the same)."""

    def paced_advance(self):  # noqa: ANN001, ANN202
        events = advance(self)
        time.sleep(seconds)
        return events

    return paced_advance


def test_the_page_streams_a_generation_lists_it_stops_one_and_reads_genres(served, browser, tmp_path):
    live, models = served
    scheduler = models["plots"].scheduler
    browser.get(live.url + "/")
    wait(browser, lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value("plots")

    # the form is the model's: a title box, a rating slider over its scale, genre checkboxes, prime
    slider = browser.find_element(By.ID, "field-rating")
    assert (slider.get_attribute("min"), slider.get_attribute("max")) == ("0", "10")
    genres = browser.find_elements(By.CSS_SELECTOR, "#field-genres input[type=checkbox]")
    assert {g.get_attribute("value") for g in genres} == set(models["plots"].loaded.data["genres"])
    assert browser.find_element(By.ID, "field-prime").is_displayed()
    browser.find_element(By.ID, "field-title").send_keys("The Last Lighthouse")
    browser.find_element(By.CSS_SELECTOR, "#field-genres input[value=horror]").click()
    for name, value in (("seed", "5"), ("n", "2"), ("max_new_tokens", "150")):
        box = browser.find_element(By.ID, name)
        box.clear()
        box.send_keys(value)
    rating = float(slider.get_attribute("value"))

    # count how often the text on the page changes while it is written: streamed, not in one go
    browser.execute_script(
        "window.updates = 0; new MutationObserver(() => window.updates++)"
        ".observe(document.getElementById('outputs'), {subtree: true, childList: true, characterData: true});"
    )
    # paced, so that the page reads the stream in many pieces however fast the machine decodes
    with pytest.MonkeyPatch.context() as paced:
        paced.setattr(DecodingBatch, "advance", _paced(DecodingBatch.advance, seconds=0.01))
        browser.find_element(By.ID, "generate").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == 1)
    body = {"model": "plots", "title": "The Last Lighthouse", "genres": ["horror"], "rating": rating,
            "seed": 5, "n": 2, "max_new_tokens": 150}  # fmt: skip
    expected = httpx.post(live.url + "/v1/generate", json=body, timeout=60).json()["texts"]
    outputs = browser.find_elements(By.CSS_SELECTOR, "#outputs .output")
    assert [o.find_elements(By.TAG_NAME, "span")[0].text for o in outputs] == ["The Last Lighthouse"] * 2
    shown = [[s.get_attribute("textContent") for s in o.find_elements(By.TAG_NAME, "span")] for o in outputs]
    assert [prompt + written for prompt, written, *_ in shown] == [t["text"] for t in expected]
    assert browser.execute_script("return window.updates") > 3  # the text grew in steps
    for output, text in zip(outputs, expected, strict=True):
        ending = "cut off at max_new_tokens" if text["cut_off"] else "finished at the stop"
        assert "done" in output.get_attribute("class") and ending in output.text
    entry = browser.find_element(By.CSS_SELECTOR, "#results li")
    meta = entry.find_element(By.CLASS_NAME, "meta").text
    assert "finished" in meta and "seed 5" in meta and "max_new_tokens=150" in meta and '"horror"' in meta
    listed = [
        t.get_attribute("textContent") for t in entry.find_elements(By.CSS_SELECTOR, ".result-text .text")
    ]
    assert listed == [t["text"] for t in expected]
    browser.save_screenshot(str(tmp_path / "serve_generate.png"))

    # Stop: the page hangs up and the server drops the rows (held so that they are still waiting)
    before = scheduler.cancelled_rows
    with scheduler.held():
        browser.find_element(By.ID, "generate").click()
        assert wait_until(lambda: scheduler.waiting_rows == 2)
        assert browser.find_element(By.ID, "generate").get_attribute("disabled") is not None
        browser.find_element(By.ID, "stop").click()
        wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == 2)
        assert wait_until(lambda: scheduler.cancelled_rows == before + 2)
    newest = browser.find_element(By.CSS_SELECTOR, "#results li .meta").text
    assert "stopped" in newest and browser.find_element(By.ID, "generate").get_attribute("disabled") is None

    # the genre view: a bar per genre, most probable first, as the API ranks them
    Select(browser.find_element(By.ID, "model")).select_by_value("genres")
    assert browser.find_element(By.ID, "genre-view").is_displayed()
    assert not browser.find_element(By.ID, "write-view").is_displayed()
    browser.find_element(By.ID, "predict-text").send_keys(PLOT)
    browser.find_element(By.ID, "predict").click()
    genres = models["genres"].loaded.predictor.genres
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#bars .bar")) == len(genres))
    ranked = httpx.post(live.url + "/v1/predict", json={"model": "genres", "text": PLOT}).json()["genres"]
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars .bar")
    assert [b.get_attribute("data-genre") for b in bars] == [g["genre"] for g in ranked]
    widths = [float(b.find_element(By.CLASS_NAME, "fill").value_of_css_property("width")[:-2]) for b in bars]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]
    assert [("above" in b.get_attribute("class")) for b in bars] == [g["above_threshold"] for g in ranked]
    browser.save_screenshot(str(tmp_path / "serve_genres.png"))
    assert (tmp_path / "serve_generate.png").stat().st_size > 10_000
    assert (tmp_path / "serve_genres.png").stat().st_size > 10_000


def test_a_refused_prompt_shows_the_servers_one_line_error(served, browser):
    live, _ = served
    browser.get(live.url + "/")
    wait(browser, lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    Select(browser.find_element(By.ID, "model")).select_by_value("plots")
    browser.find_element(By.ID, "field-title").send_keys("Ωmega")  # the form lets it through
    browser.find_element(By.ID, "generate").click()
    error = wait(browser, lambda d: d.find_element(By.ID, "error").text or None)
    assert "characters this model never saw in training: 'Ω'" in error and "allowed" in error
    assert not browser.find_elements(By.CSS_SELECTOR, "#results li")  # a refused request is no result
    assert browser.find_element(By.ID, "generate").get_attribute("disabled") is None


def test_the_api_docs_render_offline(served, browser):
    live, _ = served
    browser.get(live.url + "/docs")
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".opblock")) >= 4)
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/models", "/v1/generate", "/v1/predict", "/healthz"} <= paths
