"""nn3 serve in headless Chromium: a trained run's page draws its curves, errors and a drawn digit's outputs,
and a run still training gains an epoch on the open page.

Needs Debian's chromium and chromium-driver (/usr/bin) and selenium; skipped without them.
Waits are for conditions on the page (WebDriverWait polls until they hold), never sleeps.
"""
from __future__ import annotations

import shutil
import threading

import pytest

pytest.importorskip("werkzeug")
webdriver = pytest.importorskip("selenium.webdriver")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from nn3.runs import config as run_config, inspect, session  # noqa: E402
from nn3.serve import app  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
pytestmark = [
    pytest.mark.browser, pytest.mark.mnist,
    pytest.mark.skipif(not (shutil.which(CHROMIUM) and shutil.which(DRIVER)), reason="needs chromium and chromedriver"),
]
PATIENCE = 120  # seconds a condition may take on a loaded machine before the test fails


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--window-size=1400,2000",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    yield driver
    driver.quit()


@pytest.fixture
def serving():
    """serving(folder) -> base URL of a server for the runs in ``folder``; stopped after the test."""
    servers = []

    def start(folder):
        server = app.make_server([folder], port=0)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.port}"
    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _until(driver, condition):
    return WebDriverWait(driver, PATIENCE).until(lambda d: condition(d))


def _css(driver, selector):
    return driver.find_elements(By.CSS_SELECTOR, selector)


def test_a_trained_conv_run_shows_curves_errors_filters_and_a_drawn_digit(tmp_path, browser, serving):
    session.start(run_config.make_config("basic_conv", epochs=1, limit=300), tmp_path / "conv")
    base = serving(tmp_path)
    browser.get(base + "/")
    link = _until(browser, lambda d: _css(d, "#runs tbody a"))[0]
    assert link.text == "conv"
    link.click()
    _until(browser, lambda d: _css(d, "#wrong figure"))
    assert _css(browser, "#accuracy-chart circle.pt") and _css(browser, "#cost-chart polyline.series")
    assert len(_css(browser, "#filters canvas")) == 20
    wrong = inspect.replay(tmp_path / "conv", best=True)
    assert f"{wrong['correct']} / {wrong['n']}" in browser.find_element(By.ID, "step-accuracy").text
    first = _css(browser, "#wrong figure")[0]
    true, predicted = first.find_element(By.TAG_NAME, "figcaption").text.split(" → ")
    assert true != predicted
    first.click()
    _until(browser, lambda d: _css(d, "#detail .probs .p"))
    assert f"predicted {predicted}" in browser.find_element(By.ID, "detail").text
    assert len(_css(browser, "#detail .map")) == 20  # the first layer's feature maps of that digit

    pad = browser.find_element(By.ID, "pad")
    stroke = ActionChains(browser).move_to_element_with_offset(pad, -30, -100).click_and_hold()
    for dx, dy in [(10, 40), (10, 60), (10, 80)]:
        stroke.move_by_offset(dx, dy)
    stroke.release().perform()
    _until(browser, lambda d: d.find_element(By.ID, "draw-result").get_attribute("data-state") == "done")
    shown = {int(p.get_attribute("data-digit")): float(p.text) for p in _css(browser, "#draw-probs .p")}
    predicted = int(browser.find_element(By.ID, "draw-pred").text)
    assert sorted(shown) == list(range(10)) and abs(sum(shown.values()) - 1) < 0.01
    assert predicted == max(shown, key=shown.get)
    assert len(_css(browser, "#draw-maps .map")) == 20
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_a_member_run_draws_each_member_and_the_vote_as_it_trains(tmp_path, browser, serving, synthetic_mnist):
    """Thin curves per member under the vote's bold one, a new epoch for each without a reload; member K on request."""
    spec = {"layers": [
        {"type": "FullyConnectedLayer", "n_in": 784, "n_out": 12, "activation_fn": "sigmoid", "p_dropout": 0.0},
        {"type": "SoftmaxLayer", "n_in": 12, "n_out": 10, "p_dropout": 0.0}], "cost": "LogLikelihoodCost"}
    config = run_config.make_config("shallow", spec=spec, data_path=synthetic_mnist.path, members=[3, 0, 7],
                              epochs=1, eta=0.5, mini_batch_size=10)
    session.start(config, tmp_path / "many")[0].close()
    base = serving(tmp_path)
    browser.get(base + "/run/many")
    browser.get_log("browser")  # drop what an earlier test's page logged (its server has stopped)
    _until(browser, lambda d: d.find_element(By.ID, "curves").get_attribute("data-epochs") == "1")
    names = {f"member {k} validation" for k in range(3)} | {"vote validation", "vote test"}
    drawn = {p.get_attribute("data-name"): p.get_attribute("stroke-width") for p in _css(browser, "#accuracy-chart polyline.series")}
    assert names <= set(drawn) and drawn["member 1 validation"] == "1" and drawn["vote validation"] == "3"
    assert len(_css(browser, "#cost-chart polyline.series")) == 4  # each member's cost and their mean
    _until(browser, lambda d: "of member 0 (seed 3)" in d.find_element(By.ID, "step-accuracy").text)
    Select(browser.find_element(By.ID, "member")).select_by_value("2")
    _until(browser, lambda d: "of member 2 (seed 7)" in d.find_element(By.ID, "step-accuracy").text)
    wrong = inspect.replay(tmp_path / "many", best=True, member=2)
    assert f"{wrong['correct']} / {wrong['n']}" in browser.find_element(By.ID, "step-accuracy").text
    browser.execute_script("window.stillThisPage = true")
    session.resume(tmp_path / "many", epochs=2)
    _until(browser, lambda d: d.find_element(By.ID, "curves").get_attribute("data-epochs") == "2")
    for name in names:
        assert len(_css(browser, f'#accuracy-chart circle.pt[data-series="{name}"]')) == 2, name
    assert browser.execute_script("return window.stillThisPage") is True
    assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]


def test_a_run_still_training_gains_an_epoch_without_a_reload(tmp_path, browser, serving, shallow_real_run):
    shutil.copytree(shallow_real_run, tmp_path / "live")  # a copy: this test trains it on
    base = serving(tmp_path)
    browser.get(base + "/run/live")
    _until(browser, lambda d: d.find_element(By.ID, "curves").get_attribute("data-epochs") == "1")
    assert len(_css(browser, "#accuracy-chart circle.pt[data-series=validation]")) == 1
    Select(browser.find_element(By.ID, "step")).select_by_value("latest")
    _until(browser, lambda d: "(after epoch 0)" in d.find_element(By.ID, "step-accuracy").text)
    browser.execute_script("window.stillThisPage = true")
    session.resume(tmp_path / "live", epochs=2)  # the next epoch lands in metrics.jsonl
    _until(browser, lambda d: d.find_element(By.ID, "curves").get_attribute("data-epochs") == "2")
    assert len(_css(browser, "#accuracy-chart circle.pt[data-series=validation]")) == 2
    # the misclassified digits follow the run to its newest checkpoint
    _until(browser, lambda d: "(after epoch 1)" in d.find_element(By.ID, "step-accuracy").text)
    assert browser.execute_script("return window.stillThisPage") is True
    assert "2 epochs done" in browser.find_element(By.ID, "status").text
