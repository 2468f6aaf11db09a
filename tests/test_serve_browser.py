"""The page in a real browser: Debian's headless Chromium driven by Playwright, against `videoseq serve`.

Uploading a real clip shows the labels `videoseq predict` gives. With Chromium's fake
camera playing a y4m written from a real clip, the page shows live labels, and the
top-1 labels it received equal `predict --stream` on the same frames: the fake camera
loops the clip at its frame rate from when capture starts, the page grabs frames when
the camera delivers them, and their timestamps are wall-clock times, so which frames
enter the model is decided by the server's frame clock at run time. The test therefore
takes the frames the page actually sent (captured on the wire), keeps those the server
reported as entering the model (``kept``), and runs `predict --stream` on exactly those
frames (decoded as the server decodes them, in a lossless video at one frame per model
interval, so the file's clock keeps each of them).
"""

import base64
import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from videoseq.cli import main

from conftest import REPO
from serve_support import (
    HEADER,
    STREAM_CLASSES,
    assert_not_blank,
    predict_stream_rows,
    read_bgr,
    stream_checkpoint,
    write_lossless,
    write_y4m,
)

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is absent (apt-get install chromium); .ci/run installs it")]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is absent (pip install playwright)")
pytest.importorskip("fastapi")

# a fresh profile, and no background traffic (the closed network refuses it)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CAMERA_FPS = 12
WAIT_S = 120


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return stream_checkpoint(tmp_path_factory.mktemp("browser") / "gestures.pt")


@pytest.fixture(scope="module")
def server(checkpoint, tmp_path_factory):
    """`videoseq serve CHECKPOINT --port P` in a process of its own (default host: 127.0.0.1)."""
    port, log_path = free_port(), tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    with open(log_path, "w") as log:
        process = subprocess.Popen([sys.executable, "-m", "videoseq", "serve", str(checkpoint), "--port", str(port),
                                    "--workers", "2"], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    base, deadline = f"http://127.0.0.1:{port}", time.monotonic() + WAIT_S
    while True:
        try:
            urllib.request.urlopen(base + "/healthz", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"videoseq serve did not come up:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.3)
    assert f"open {base}/" in log_path.read_text()
    yield base
    process.send_signal(signal.SIGINT)
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


@contextmanager
def chromium(tmp_path: Path, *extra: str):
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS + list(extra),
            viewport={"width": 1400, "height": 1000})
        try:
            yield context
        finally:
            context.close()


INKED_PIXELS = """() => { const c = document.getElementById('timeline');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] < 200 || d[i + 1] < 200 || d[i + 2] < 200) n++;
  return n; }"""


DROP_FILE = """([b64, name]) => { const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer(); transfer.items.add(new File([bytes], name)); return transfer; }"""


def cli_top3(checkpoint: Path, video: Path, out: Path) -> tuple[list[str], list[float]]:
    assert main(["predict", str(checkpoint), str(video), "--csv", str(out), "--topk", "3"]) == 0
    with open(out, newline="") as f:
        [row] = list(csv.DictReader(f))
    return [row[f"label_{i}"] for i in (1, 2, 3)], [float(row[f"score_{i}"]) for i in (1, 2, 3)]


def shown_top3(page, name: str) -> tuple[list[str], list[float]]:
    wait_for(page, lambda: page.inner_text("#file-status").startswith(name), f"the answer for {name}")
    labels = page.locator("#topk-list .label").all_inner_texts()
    return labels, [float(s) for s in page.locator("#topk-list .score").all_inner_texts()]


def test_the_page_classifies_dropped_and_chosen_clips_with_the_labels_of_predict(server, checkpoint, shared_video,
                                                                                  tmp_path):
    dropped, chosen = shared_video("short_32frames.mp4"), shared_video("ucf_like_320x240.avi")
    with chromium(tmp_path) as context:
        page = context.new_page()
        urls: list[str] = []
        page.on("request", lambda request: urls.append(request.url))
        page.goto(server + "/")
        wait_for(page, lambda: "3 classes" in page.inner_text("#model"), "the model card")
        page.fill("#topk", "3")
        transfer = page.evaluate_handle(DROP_FILE, [base64.b64encode(dropped.read_bytes()).decode(), dropped.name])
        page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
        on_drop = shown_top3(page, dropped.name)
        page.set_input_files("#file", str(chosen))
        on_choose = shown_top3(page, chosen.name)
        status, inked = page.inner_text("#file-status"), page.evaluate(INKED_PIXELS)
        page.screenshot(path=str(tmp_path / "upload.png"), full_page=True)
    for (labels, scores), video in ((on_drop, dropped), (on_choose, chosen)):
        expected_labels, expected_scores = cli_top3(checkpoint, video, tmp_path / f"{video.stem}.csv")
        assert labels == expected_labels
        assert scores == pytest.approx(expected_scores, abs=5.1e-4)  # the page shows 3 decimals
    assert "164 frames" in status and inked > 1000  # the timeline is drawn
    assert urls and all(url.startswith(server + "/") for url in urls), urls  # nothing from elsewhere
    assert_not_blank(tmp_path / "upload.png")


def wait_for(page, condition, what: str) -> None:
    """Poll from Python: the page's Content-Security-Policy forbids the eval behind wait_for_function."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        page.wait_for_timeout(200)


def run_webcam(server: str, tmp_path: Path, clip: Path, steps: int) -> tuple[list, list[dict], dict]:
    """Open the page with the fake camera, stream until ``steps`` predictions came back, stop.
    Returns what the page sent and received on the WebSocket, and what the page showed."""
    sent, received = [], []

    def watch(ws) -> None:
        if "/v1/stream" in ws.url:
            ws.on("framesent", lambda payload: sent.append(payload))
            ws.on("framereceived", lambda payload: received.append(json.loads(payload)))

    camera = ["--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
              f"--use-file-for-fake-video-capture={clip}"]
    with chromium(tmp_path, *camera) as context:
        page = context.new_page()
        page.on("websocket", watch)
        page.goto(server + "/")
        wait_for(page, lambda: "classes" in page.inner_text("#model"), "the model card")
        page.click("#webcam")
        wait_for(page, lambda: sum(bool(m.get("topk")) for m in received) >= steps, f"{steps} live predictions")
        shown = {"labels": page.locator("#live-labels .label").all_inner_texts(),
                 "stats": page.inner_text("#live-stats"), "last": [m for m in received if m.get("topk")][-1]}
        page.locator("#preview").screenshot(path=str(tmp_path / "live.png"))
        page.click("#stop")
        wait_for(page, lambda: any(m["type"] == "summary" for m in received), "the stream summary")
    return sent, received, shown


def test_the_page_streams_the_fake_camera_with_the_labels_of_predict_stream(server, checkpoint, shared_video,
                                                                            tmp_path):
    source = read_bgr(shared_video("Megamind.avi"), 48, size=(160, 120))
    clip = write_y4m(tmp_path / "clip.y4m", source, CAMERA_FPS)
    sent, received, shown = run_webcam(server, tmp_path, clip, steps=12)
    frames = {HEADER.unpack_from(p)[0]: p[HEADER.size:] for p in sent if isinstance(p, bytes)}
    results = [m for m in received if m["type"] == "result"]
    dropped = [seq for m in results for seq in m["dropped"]]
    assert sorted([m["seq"] for m in results] + dropped) == sorted(frames)  # every sent frame accounted for
    # the page shows what it received: the last top-k over the preview, fps, latency and drops
    assert shown["labels"][0] == shown["last"]["topk"][0]["label"] in STREAM_CLASSES
    assert re.fullmatch(r"\d+\.\d fps · \d+ ms · \d+ dropped", shown["stats"]), shown["stats"]
    assert_not_blank(tmp_path / "live.png")
    # the frames are the clip's: each sent frame is close to one of the y4m's frames
    decoded = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR).astype(np.float32) for j in frames.values()]
    nearest = [min(range(len(source)), key=lambda i: np.abs(d - source[i]).mean()) for d in decoded]
    errors = [np.abs(d - source[i]).mean() for d, i in zip(decoded, nearest)]
    assert max(errors) < 12 and len(set(nearest)) > 6, (max(errors), sorted(set(nearest)))
    # predict --stream on exactly the frames that entered the model, one per model interval (1/6 s)
    kept = [m for m in results if m["kept"]]
    video = write_lossless(tmp_path / "kept.avi", [frames[m["seq"]] for m in kept], fps=6)
    rows = [r for r in predict_stream_rows(checkpoint, video, tmp_path / "cli.csv") if r["kind"] == "step"]
    live = [m for m in kept if m["topk"]]
    assert len(live) == len(rows) >= 12
    assert [m["topk"][0]["label"] for m in live] == [r["label_1"] for r in rows]
    assert [m["topk"][0]["score"] for m in live] == pytest.approx([float(r["score_1"]) for r in rows], abs=1e-5)
    assert np.std([float(r["score_1"]) for r in rows]) > 1e-4  # the frames matter: the match is not vacuous
    summary = received[-1] if received[-1]["type"] == "summary" else next(m for m in received if m["type"] == "summary")
    assert summary["received"] == len(frames) and summary["dropped"] == len(dropped)
