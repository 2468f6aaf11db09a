"""WS /v1/stream: the results of predict --stream on the same frames, drops, limits, bad frames."""

import math
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402

from videoseq.cli import main  # noqa: E402
from videoseq.predict import Predictor  # noqa: E402
from videoseq.serve.app import create_app  # noqa: E402
from videoseq.serve.limits import ServeLimits  # noqa: E402
from videoseq.serve.session import jpeg_size  # noqa: E402

from serve_support import (  # noqa: E402
    STREAM_CLASSES,
    frame_message,
    jpegs,
    predict_stream_rows,
    read_bgr,
    stream_checkpoint,
    write_lossless,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return stream_checkpoint(tmp_path_factory.mktemp("stream") / "gestures.pt")


@pytest.fixture(scope="module")
def predictor(checkpoint):
    return Predictor.from_checkpoint(checkpoint, device="cpu")


def serve(predictor, **limits) -> TestClient:
    return TestClient(create_app(predictor, ServeLimits(**limits)), raise_server_exceptions=False)


def until_summary(ws) -> list[dict]:
    messages = []
    while not messages or messages[-1]["type"] != "summary":
        messages.append(ws.receive_json())
    return messages


def test_a_stream_gives_the_results_of_predict_stream_on_the_same_frames(checkpoint, predictor, shared_video,
                                                                          tmp_path):
    frames = jpegs(read_bgr(shared_video("Megamind.avi"), 72, size=(160, 120)))
    fps = 24.0
    with serve(predictor) as client, client.websocket_connect("/v1/stream?topk=3&events=1&threshold=0") as ws:
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["interval_s"] == pytest.approx(2 / 12)
        assert ready["classes"] == STREAM_CLASSES
        results = []
        for i, jpeg in enumerate(frames):  # one at a time, as fast as the model answers: nothing is dropped
            ws.send_bytes(frame_message(i, i / fps, jpeg))
            results.append(ws.receive_json())
            while results[-1]["type"] == "event":
                results.append(ws.receive_json())
        ws.send_text('{"type": "end"}')
        tail = until_summary(ws)
    steps = [m for m in results + tail if m["type"] == "result"]
    assert [m["seq"] for m in steps] == list(range(len(frames))) and all(not m["dropped"] for m in steps)
    assert [m["seq"] for m in steps if m["kept"]] == list(range(0, len(frames), 4))  # one frame in 4 at 24 fps
    rows = predict_stream_rows(checkpoint, write_lossless(tmp_path / "same.avi", frames, fps), tmp_path / "cli.csv",
                               "--events", "--threshold", "0")
    expected = [r for r in rows if r["kind"] == "step"]
    got = [m for m in steps if m["topk"]]
    assert [m["seq"] for m in got] == [int(r["frame"]) for r in expected] and len(got) == 15
    for message, row in zip(got, expected):
        assert [t["label"] for t in message["topk"]] == [row[f"label_{i}"] for i in (1, 2, 3)]
        assert [t["score"] for t in message["topk"]] == pytest.approx(
            [float(row[f"score_{i}"]) for i in (1, 2, 3)], abs=1e-5)
    assert np.std([m["topk"][0]["score"] for m in got]) > 1e-4  # the frames matter: the check is not vacuous
    events = [m for m in results + tail if m["type"] == "event"]
    assert [(e["label"], e["start_frame"], e["end_frame"]) for e in events] == [
        (r["label_1"], int(r["frame"]), int(r["end_frame"])) for r in rows if r["kind"] == "event"]
    summary = tail[-1]
    assert (summary["received"], summary["processed"], summary["kept"], summary["steps"], summary["dropped"]) == (
        72, 72, 18, 15, 0)


def test_a_client_that_outruns_the_model_has_frames_dropped_and_reported(predictor, shared_video):
    frames = jpegs(read_bgr(shared_video("vtest.avi"), 60))  # 768x576: decoding alone outlasts a send
    with serve(predictor) as client, client.websocket_connect("/v1/stream?fps=10") as ws:
        ws.receive_json()
        for i, jpeg in enumerate(frames):  # a burst, no waiting for answers
            ws.send_bytes(frame_message(i, i / 10, jpeg))
        ws.send_text('{"type": "end"}')
        messages = until_summary(ws)
        metrics = client.get("/metrics").text
    results = [m for m in messages if m["type"] == "result"]
    processed = [m["seq"] for m in results]
    dropped = [seq for m in results for seq in m["dropped"]]
    summary = messages[-1]
    assert sorted(processed + dropped) == list(range(60))  # every frame answered or reported dropped
    assert processed == sorted(processed) and processed[-1] == 59  # in order, and the newest frame is answered
    assert summary["dropped"] == len(dropped) == results[-1]["dropped_total"] > 0
    assert summary["received"] == 60 == summary["processed"] + summary["dropped"]
    # the queue holds one frame: a frame waits at most while one other frame is in the model
    assert max(m["queue_ms"] for m in results) < 2 * max(m["server_ms"] for m in results) + 500
    assert f'videoseq_stream_frames_total{{outcome="dropped"}} {float(len(dropped))}' in metrics


def test_streams_beyond_the_limit_are_refused_until_one_closes(predictor):
    with serve(predictor, max_streams=1) as client:
        with client.websocket_connect("/v1/stream") as first:
            assert first.receive_json()["type"] == "ready"
            assert client.get("/healthz").json()["streams"] == 1
            with client.websocket_connect("/v1/stream") as second:
                error = second.receive_json()
                assert (error["type"], error["code"], error["status"]) == ("error", "too_many_streams", 429)
                assert "--max-streams" in error["message"]
                with pytest.raises(WebSocketDisconnect) as closed:
                    second.receive_json()
                assert closed.value.code == 1013
            first.send_text('{"type": "end"}')
            assert until_summary(first)[-1]["received"] == 0
        deadline = time.monotonic() + 10
        while client.get("/healthz").json()["streams"] and time.monotonic() < deadline:
            time.sleep(0.05)
        with client.websocket_connect("/v1/stream") as third:
            assert third.receive_json()["type"] == "ready"


@pytest.mark.parametrize("query, words", [("topk=0", ["topk='0'"]), ("fps=-5", ["fps='-5'"]),
                                          ("events=maybe", ["events='maybe'"]), ("topk=2&colour=red", ["'colour'"]),
                                          ("events=1&background=Nope", ["'Nope'"])])
def test_bad_stream_parameters_are_named_then_the_stream_closes(predictor, query, words):
    with serve(predictor) as client, client.websocket_connect(f"/v1/stream?{query}") as ws:
        error = ws.receive_json()
        assert (error["type"], error["code"]) == ("error", "invalid_parameter")
        assert all(word in error["message"] for word in words), error["message"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008


def test_bad_frames_are_reported_and_the_stream_goes_on(predictor, shared_video):
    good = jpegs(read_bgr(shared_video("box.mp4"), 1, size=(160, 120)))[0]
    big = jpegs([np.random.default_rng(0).integers(0, 256, (400, 400, 3), dtype=np.uint8)])[0]
    sent = [(b"\x01\x02\x03", "bad_frame", "12 header bytes"),
            (frame_message(1, 0.1, b"GIF89a not a jpeg"), "bad_frame", "not a JPEG"),
            (frame_message(2, math.nan, good), "bad_frame", "finite"),
            (frame_message(3, 0.3, big), "frame_too_large", "--max-frame-kb"),
            (frame_message(4, 0.4, good[:-200] + b"\x00" * 200), None, None),  # truncated: decoded or refused
            (frame_message(5, 0.5, jpegs(read_bgr(shared_video("box.mp4"), 1))[0]), "too_many_pixels", "640x480")]
    with serve(predictor, max_frame_kb=100, max_pixels=320 * 240) as client, \
            client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
        for message, code, words in sent:
            ws.send_bytes(message)
            answer = ws.receive_json()
            if code:
                assert (answer["type"], answer["code"]) == ("error", code) and words in answer["message"], answer
        ws.send_text("hello")
        answer = ws.receive_json()
        assert (answer["type"], answer["code"]) == ("error", "bad_message") and '"end"' in answer["message"]
        ws.send_bytes(frame_message(6, 0.6, good))
        assert ws.receive_json()["seq"] == 6  # the stream went on
        ws.send_text('{"type": "end"}')
        summary = until_summary(ws)[-1]
    assert summary["received"] == 7 and summary["bad"] >= 6


def test_an_onnx_export_without_its_streaming_parts_is_refused_for_streams(checkpoint, tmp_path):
    onnx = tmp_path / "clip_only.onnx"
    assert main(["export", str(checkpoint), "--out", str(onnx)]) == 0
    with serve(Predictor.from_checkpoint(onnx)) as client, client.websocket_connect("/v1/stream") as ws:
        error = ws.receive_json()
    assert error["code"] == "no_streaming_parts" and "--streaming" in error["message"]


@pytest.mark.parametrize("shape, progressive", [((120, 160), False), ((481, 641), True), ((7, 3000), False)])
def test_jpeg_size_is_read_from_the_header(shape, progressive):
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])[1].tobytes()
    assert jpeg_size(data) == (shape[1], shape[0])
    with pytest.raises(ValueError, match="not a JPEG"):
        jpeg_size(b"\x89PNG....")
