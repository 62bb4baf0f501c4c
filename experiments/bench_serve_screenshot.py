"""docs/serve.png: the serve page in headless chromium (selenium), over the tiny models the tests
train (the plot model a little longer), after two generations.

    python experiments/bench_serve_screenshot.py docs/serve.png
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's movielab and tests

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from movielab.cli.train import train  # noqa: E402
from movielab.serve.app import create_app  # noqa: E402
from movielab.serve.served import load_served  # noqa: E402
from tests.conftest import compose_config  # noqa: E402
from tests.test_serve_api import CLASSIFIER, OPTIONS, PLOTS, LiveServer  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--window-size=1200,1500", "--hide-scrollbars"]  # fmt: skip


def main(target: Path) -> None:
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        longer = ["trainer.max_steps=120", "trainer.val_check_interval=60"]
        runs = {"plots": [*PLOTS, *longer], "genres": CLASSIFIER}
        for name, overrides in runs.items():
            train(compose_config(root / name, overrides))
        models = load_served({n: root / n / "run" / "checkpoints" / "last.ckpt" for n in runs}, max_batch=8)
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
        for flag in [*FLAGS, f"--user-data-dir={root / 'profile'}"]:
            options.add_argument(flag)
        with LiveServer(create_app(models, OPTIONS)) as live:
            driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
            try:
                take(driver, live.url, target)
            finally:
                driver.quit()
        for model in models.values():
            if model.scheduler is not None:
                model.scheduler.close()
    print(f"saved {target}")


def take(driver, url: str, target: Path) -> None:
    def wait(condition):
        return WebDriverWait(driver, 60, 0.05).until(condition)

    driver.get(url + "/")
    wait(lambda d: len(Select(d.find_element(By.ID, "model")).options) == 2)
    Select(driver.find_element(By.ID, "model")).select_by_value("plots")
    driver.find_element(By.ID, "field-title").send_keys("The Last Lighthouse")
    driver.find_element(By.CSS_SELECTOR, "#field-genres input[value=horror]").click()
    for seed, done in (("7", 1), ("8", 2)):
        for name, value in (("seed", seed), ("n", "2"), ("max_new_tokens", "200")):
            box = driver.find_element(By.ID, name)
            box.clear()
            box.send_keys(value)
        driver.find_element(By.ID, "generate").click()
        wait(lambda d, done=done: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == done)
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(target))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "docs" / "serve.png")
