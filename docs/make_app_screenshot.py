"""Take docs/images/app.png: the page of `omni-avsr app` after one click on a clip, in a headless Chromium.

    python docs/make_app_screenshot.py --model outputs/demo/omni_avsr_st                # its corpus's first test clip
    python docs/make_app_screenshot.py --model DIR --clip clip.mp4 --reference "..." --snr 0   # babble at 0 dB

The clip defaults to the first test clip of the corpus the model was evaluated on (its `results.json`), with its
transcript as the reference. Needs the `app` and `dev` extras and Debian's `chromium` and `chromium-driver`.
"""

import argparse
import base64
import io
import os
import shutil
import socket
from pathlib import Path

from PIL import Image
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from omni_avsr.app import build_page, example_clips, launch
from omni_avsr.app_backend import AppBackend
from omni_avsr.app_media import MAX_UPLOAD_MB
from omni_avsr.cli import _load_model_and_processor


DEFAULT_OUTPUT = Path(__file__).resolve().parent / "images" / "app.png"
WIDTH = 1400


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="model folder")
    parser.add_argument("--clip", help="video or audio file (default: the first test clip of the model's corpus)")
    parser.add_argument("--audio", help="the clip's soundtrack (default: the .wav beside a video, if any)")
    parser.add_argument("--reference", default=None, help="the clip's transcript (default: the corpus's)")
    parser.add_argument("--noise", help="babble recording (default: the corpus's)")
    parser.add_argument("--snr", type=int, help="add babble at this SNR in dB (default: clean)")
    parser.add_argument("--output", default=str(DEFAULT_OUTPUT))
    args = parser.parse_args()

    examples, corpus_noise = example_clips(args.model)
    if args.clip is None and not examples:
        parser.error(f"{args.model} has no example clips (its results.json's corpus, examples/); give --clip")
    clip = Path(args.clip) if args.clip else Path(examples[0].video or examples[0].audio)
    reference = args.reference if args.reference is not None else (examples[0].text if not args.clip else "")
    soundtrack = args.audio or (clip.with_suffix(".wav") if clip.suffix != ".wav" else None)

    model, processor = _load_model_and_processor(args.model)
    backend = AppBackend(model, processor, babble_path=args.noise or corpus_noise)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    page = build_page(backend, os.path.basename(os.path.normpath(args.model)), examples)
    launch(page, examples, "127.0.0.1", port, MAX_UPLOAD_MB, prevent_thread_lock=True)

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={WIDTH},1200"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=webdriver.ChromeService(shutil.which("chromedriver")), options=options)
    try:
        browser.get(f"http://127.0.0.1:{port}")
        wait = WebDriverWait(browser, 300)
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#run"))
        media = [("video-input", clip)] if clip.suffix != ".wav" else [("audio-input", clip)]
        if soundtrack is not None and Path(soundtrack).is_file():
            media.append(("audio-input", Path(soundtrack)))
        for component, path in media:
            browser.find_element(By.CSS_SELECTOR, f"#{component} input[type=file]").send_keys(str(path.resolve()))
            wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, f"#{component} [src*='/file='], "
                                                                         f"#{component} [href*='/file=']"))
        browser.find_element(By.CSS_SELECTOR, "#reference textarea").send_keys(reference)
        if args.snr is not None:
            browser.find_element(By.CSS_SELECTOR, "#noise input[value='babble']").click()
            slider = browser.find_element(By.CSS_SELECTOR, "#snr input[type=range]")
            for _ in range(abs(args.snr)):  # the slider starts at 0 dB
                slider.send_keys(Keys.ARROW_LEFT if args.snr < 0 else Keys.ARROW_RIGHT)
        browser.find_element(By.CSS_SELECTOR, "#run").click()
        wait.until(lambda page: "cells of a" in page.find_element(By.CSS_SELECTOR, "#summary").text)
        wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#cost canvas, #cost svg"))
        # The whole page, not only the window (Chrome's DevTools capture beyond the viewport).
        size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        })
        # 256 colours: the page is flat colours and text, and the file stays small in the repository.
        image = Image.open(io.BytesIO(base64.b64decode(shot["data"]))).convert("RGB")
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.output, optimize=True)
    finally:
        browser.quit()
        page.close()
    print(f"Wrote {args.output}")


if __name__ == "__main__":
    main()
