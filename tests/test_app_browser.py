"""`omni-avsr app` in a real headless Chromium: the page transcribes an uploaded clip at every task × rate as the
pipeline does, the noise slider changes what the model hears, bad files end in the CLI's one-line message on the
page, and the server stays up. Skipped, saying why, where Chromium, chromedriver, selenium or Gradio is missing
(`.ci/run` installs them)."""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
from test_media import write_video
from tiny_models import saved_model, tiny_decoding_model

from omni_avsr import AudioVisualSpeechRecognitionPipeline, load_clip
from omni_avsr.app_media import NoiseMixer, playable_audio
from omni_avsr.cli import main
from omni_avsr.training.evaluation import evaluation_cells


pytest.importorskip("gradio", reason="the web app needs Gradio: pip install 'omni-avsr[app]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="the browser tests need selenium: pip install 'omni-avsr[dev]'")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.common.exceptions import TimeoutException  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


REPO_ROOT = Path(__file__).resolve().parents[1]
SNR_DB = -5
COLUMNS = ["task", "audio rate", "video rate", "LLM media tokens / s", "decode (ms)", "transcript"]


def find_browser() -> tuple[str, str]:
    """Chromium and its chromedriver, or a skip that says what to install."""
    browser = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver = shutil.which("chromedriver")
    if browser is None or driver is None:
        missing = " and ".join(name for name, path in (("chromium", browser), ("chromedriver", driver)) if path is None)
        pytest.skip(f"no {missing} on this machine: apt-get install chromium chromium-driver (.ci/run does)")
    return browser, driver


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return saved_model(*tiny_decoding_model(max_new_tokens=6), tmp_path_factory.mktemp("app_model"))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """`clip.mp4` (2 s of mouth crops with AAC audio), `babble.wav`, `broken.mp4` (not media) and `wall.mp4` (a face
    video's size, without a face)."""
    directory = tmp_path_factory.mktemp("app_browser_media")
    rng = np.random.default_rng(0)
    write_video(directory / "clip.mp4", num_frames=50, audio=rng.standard_normal((1, 50 * 640)).astype(np.float32) * 0.1)
    soundfile.write(directory / "babble.wav", rng.standard_normal(16000 * 3).astype(np.float32) * 0.1, 16000)
    (directory / "broken.mp4").write_bytes(rng.bytes(4000))
    write_video(directory / "wall.mp4", num_frames=10, size=160)
    return directory


@pytest.fixture(scope="module")
def server(model_dir, media, tmp_path_factory):
    """`omni-avsr app` on a free local port, in its own process, with its temporary files in a folder of its own."""
    find_browser()
    scratch = tmp_path_factory.mktemp("app_server_tmp")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "omni_avsr.cli", "app", "--model", str(model_dir), "--port", str(port),
               "--noise", str(media / "babble.wav")]
    environment = {**os.environ, "TMPDIR": str(scratch), "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    log = open(scratch / "server.log", "w")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"omni-avsr app exited with {process.returncode}: {(scratch / 'server.log').read_text()[-2000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"omni-avsr app did not answer on {url} within 180 s")
                time.sleep(0.5)
        yield url, scratch
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def browser(server):
    binary, driver_path = find_browser()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=webdriver.ChromeService(driver_path), options=options)
    yield driver
    driver.quit()


def open_page(browser, url: str) -> None:
    browser.get(url)
    WebDriverWait(browser, 60).until(lambda page: page.find_elements(By.CSS_SELECTOR, "#run"))


def upload(browser, component: str, path: Path) -> None:
    """Give a file to an input component and wait until the server has it (the component links to its copy there)."""
    browser.find_element(By.CSS_SELECTOR, f"#{component} input[type=file]").send_keys(str(path))
    served = f"#{component} [src*='/file='], #{component} [href*='/file=']"
    WebDriverWait(browser, 30).until(lambda page: page.find_elements(By.CSS_SELECTOR, served))


def run_and_wait(browser, *done: str) -> None:
    """Click the button and wait until the summary above the table says all of `done` (the transcripts' summary:
    while they are computed it says "Transcribing")."""
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    WebDriverWait(browser, 120).until(
        lambda page: all(phrase in page.find_element(By.CSS_SELECTOR, "#summary").text for phrase in done)
    )


def page_table(browser) -> list[dict]:
    """The transcript table's rows as the page shows them now."""
    rows = {}
    for cell in browser.find_elements(By.CSS_SELECTOR, "#table [role=gridcell]"):
        rows.setdefault(int(cell.get_attribute("data-row")), {})[int(cell.get_attribute("data-col"))] = (
            cell.get_attribute("textContent").strip()
        )
    return [{COLUMNS[column]: row[column] for column in sorted(row)} for _, row in sorted(rows.items())]


def shown_table(browser, expected: list[dict] | None = None, timeout: float = 30) -> list[dict]:
    """The table once it shows `expected`'s transcripts (or, without `expected`, eight rows). The summary and the table
    arrive in one update, but a loaded browser may render the table's rows after the summary's text; the caller's
    assertion then reports what the page still shows after `timeout`."""

    def settled(page) -> bool:
        rows = page_table(page)
        if expected is None:
            return len(rows) == 8
        return [{key: row.get(key) for key in expected[0]} for row in rows] == expected

    try:
        WebDriverWait(browser, timeout).until(settled)
    except TimeoutException:
        pass
    return page_table(browser)


def wait_for_error(browser, message: str) -> None:
    """Wait until an error notice on the page shows `message` (Gradio's own "Video not playable" may come first)."""
    WebDriverWait(browser, 60).until(
        lambda page: any(message in toast.text for toast in page.find_elements(By.CSS_SELECTOR, ".toast-body")),
        f"no error notice saying {message!r}",
    )


def expected_rows(model_dir, audio, frames) -> list[dict]:
    """What the pipeline gives, cell by cell, for the same media."""
    from transformers import AutoModelForSpeechSeq2Seq, AutoProcessor

    model = AutoModelForSpeechSeq2Seq.from_pretrained(model_dir).eval()
    recognizer = AudioVisualSpeechRecognitionPipeline(model=model, processor=AutoProcessor.from_pretrained(model_dir))
    clip = {"audio": audio, "sampling_rate": 16000, "frames": frames}
    return [
        {
            "task": cell.task.upper(),
            "audio rate": str(cell.audio_rate or "–"),
            "video rate": str(cell.video_rate or "–"),
            "transcript": recognizer(clip, task=cell.task, audio_rate=cell.audio_rate, video_rate=cell.video_rate)["text"],
        }
        for cell in evaluation_cells(model.config)
    ]


def heard_audio(browser) -> np.ndarray:
    """The waveform the page's "audio the model hears" player serves (its download link's file)."""
    source = browser.find_element(By.CSS_SELECTOR, "#heard a[download]").get_attribute("href")
    with urllib.request.urlopen(source, timeout=10) as response:
        samples, rate = soundfile.read(io.BytesIO(response.read()), dtype="int16")
    assert rate == 16000
    return samples


def assert_heard(browser, audio: np.ndarray, timeout: float = 30) -> None:
    """The player serves `audio` as the page plays it, allowing a loaded browser time to swap in the new player."""
    expected = playable_audio(audio)[1]
    try:
        WebDriverWait(browser, timeout).until(lambda page: np.array_equal(heard_audio(page), expected))
    except TimeoutException:
        pass
    np.testing.assert_array_equal(heard_audio(browser), expected)


def test_page_transcribes_every_task_and_rate_and_the_noise_slider_reaches_the_model(server, browser, model_dir, media):
    url, scratch = server
    clip = load_clip(media / "clip.mp4")
    open_page(browser, url)
    upload(browser, "video-input", media / "clip.mp4")
    run_and_wait(browser, "8 task × rate cells of a 2.0 s clip")
    expected = expected_rows(model_dir, clip.audio, clip.frames)
    shown = shown_table(browser, expected)
    assert [{key: row[key] for key in ("task", "audio rate", "video rate", "transcript")} for row in shown] == expected
    assert [row["LLM media tokens / s"] for row in shown] == ["12.5", "3.12", "12.5", "5", "25", "17.5", "15.62", "8.12"]
    assert browser.find_element(By.CSS_SELECTOR, "#face textarea").get_attribute("value").startswith("Mouth crops already")
    assert browser.find_element(By.CSS_SELECTOR, "#crops img").get_attribute("src")
    assert browser.find_element(By.CSS_SELECTOR, "#crop-video video").get_attribute("src")
    assert_heard(browser, clip.audio)

    # Moving the slider adds babble (the only noise recording given) at that SNR.
    slider = browser.find_element(By.CSS_SELECTOR, "#snr input[type=range]")
    for _ in range(-SNR_DB):
        slider.send_keys(Keys.ARROW_LEFT)
    WebDriverWait(browser, 30).until(
        lambda page: page.find_element(By.CSS_SELECTOR, "#noise input:checked").get_attribute("value") == "babble"
    )
    run_and_wait(browser, "cells of a", f"The audio has babble at {SNR_DB} dB SNR.")
    noisy = NoiseMixer(media / "babble.wav")(clip.audio, "babble", SNR_DB)
    assert_heard(browser, noisy)
    expected = expected_rows(model_dir, noisy, clip.frames)
    shown = shown_table(browser, expected)
    assert [{key: row[key] for key in ("task", "audio rate", "video rate", "transcript")} for row in shown] == expected
    # Each request's folder is gone once its page is shown.
    assert not list(scratch.glob("omni-avsr-app-*"))


def test_bad_files_show_the_clis_one_line_message_and_the_server_stays_up(server, browser, model_dir, media, capsys):
    url, _ = server
    for component, name in (("video-input", "broken.mp4"), ("video-input", "wall.mp4")):
        assert main(["transcribe", str(media / name), "--model", str(model_dir)]) == 1
        printed = capsys.readouterr().err.strip()
        # The CLI prints `omni-avsr: error: PATH: MESSAGE`; the page shows MESSAGE, naming the file without its folder.
        message = printed.split(f"{media / name}: ", 1)[1].replace(f"{media}{os.sep}", "")
        open_page(browser, url)
        upload(browser, component, media / name)
        browser.find_element(By.CSS_SELECTOR, "#run").click()
        wait_for_error(browser, message)
    assert "No face found in any of the 10 frames of wall.mp4" in message

    open_page(browser, url)
    upload(browser, "video-input", media / "clip.mp4")
    run_and_wait(browser, "8 task × rate cells of a 2.0 s clip")
    assert len(shown_table(browser)) == 8
