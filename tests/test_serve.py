"""videoseq serve over HTTP: the same numbers as videoseq predict, the model card, metrics, every refusal."""

import csv
import itertools
import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from videoseq import __version__  # noqa: E402
from videoseq.cli import build_parser, main  # noqa: E402
from videoseq.predict import Predictor  # noqa: E402
from videoseq.serve.app import create_app  # noqa: E402
from videoseq.serve.limits import ServeLimits  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tiny_run) -> Path:
    return tiny_run / "best.pt"


@pytest.fixture(scope="module")
def predictor(checkpoint) -> Predictor:
    return Predictor.from_checkpoint(checkpoint, device="cpu")


@pytest.fixture(scope="module")
def client(predictor):
    with TestClient(create_app(predictor, ServeLimits(workers=2), name="best.pt"),
                    raise_server_exceptions=False) as c:
        yield c


def upload(client: TestClient, video: Path, query: str = "", name: str | None = None):
    with open(video, "rb") as f:
        return client.post(f"/v1/predict{query}", files={"file": (name or video.name, f)})


def cli_rows(checkpoint: Path, video: Path, out: Path, *extra: str) -> list[dict]:
    assert main(["predict", str(checkpoint), str(video), "--csv", str(out), "--topk", "3", *extra]) == 0
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


def assert_same_topk(api_top: list[dict], row: dict, tolerance: float = 1e-5) -> None:
    assert [t["label"] for t in api_top] == [row[f"label_{i}"] for i in (1, 2, 3)]
    assert [t["score"] for t in api_top] == pytest.approx([float(row[f"score_{i}"]) for i in (1, 2, 3)],
                                                         abs=tolerance)


@pytest.mark.parametrize("name", ["ucf_like_320x240.avi", "short_32frames.mp4", "flipping_a_pancake.mkv"])
def test_predict_gives_the_numbers_of_videoseq_predict(client, checkpoint, shared_video, tmp_path, name):
    video = shared_video(name)
    response = upload(client, video, "?topk=3")
    assert response.status_code == 200, response.text
    body = response.json()
    [row] = cli_rows(checkpoint, video, tmp_path / "cli.csv")
    assert_same_topk(body["topk"], row)
    assert body["file"] == name and body["video"]["frames"] > 0 and "windows" not in body


def test_windows_and_segments_follow_videoseq_predict_window(client, checkpoint, predictor, shared_video, tmp_path):
    video = shared_video("ucf_like_320x240.avi")
    body = upload(client, video, "?topk=3&window=1&stride=0.5&threshold=0").json()
    rows = cli_rows(checkpoint, video, tmp_path / "cli.csv", "--window", "1", "--stride", "0.5")
    windows = body["windows"]
    assert len(windows) == len(rows) > 5 and (body["window_s"], body["stride_s"]) == (1.0, 0.5)
    for window, row in zip(windows, rows):
        assert (round(window["start_s"], 3), round(window["end_s"], 3)) == (float(row["start_s"]), float(row["end_s"]))
        assert_same_topk(window["topk"], row)
        top = window["topk"][0]
        assert window["scores"][predictor.classes.index(top["label"])] == pytest.approx(top["score"], abs=1e-6)
        assert sum(window["scores"]) == pytest.approx(1.0, abs=1e-4)
    assert len({round(w["topk"][0]["score"], 4) for w in windows}) > 1  # the scores change along the video
    # threshold 0, no smoothing: a segment is a maximal run of windows with one top-1 label
    runs = [list(g) for _, g in itertools.groupby(windows, key=lambda w: w["topk"][0]["label"])]
    expected = [(g[0]["topk"][0]["label"], g[0]["start_s"], g[-1]["end_s"]) for g in runs]
    assert [(s["label"], s["start_s"], s["end_s"]) for s in body["segments"]] == expected
    background = windows[0]["topk"][0]["label"]
    quiet = upload(client, video, f"?window=1&stride=0.5&threshold=0&background={background}").json()
    assert [(s["label"], s["start_s"], s["end_s"]) for s in quiet["segments"]] == [
        e for e in expected if e[0] != background]


def test_an_onnx_export_serves_the_numbers_of_predict_on_it(checkpoint, shared_video, tmp_path):
    onnx = tmp_path / "tiny.onnx"
    assert main(["export", str(checkpoint), "--out", str(onnx), "--streaming"]) == 0
    video = shared_video("ucf_like_320x240.avi")
    with TestClient(create_app(Predictor.from_checkpoint(onnx), name=onnx.name)) as c:
        assert c.get("/v1/model").json()["name"] == "tiny.onnx"
        body = upload(c, video, "?topk=3").json()
    [onnx_row] = cli_rows(onnx, video, tmp_path / "onnx.csv")
    [pt_row] = cli_rows(checkpoint, video, tmp_path / "pt.csv")
    assert_same_topk(body["topk"], onnx_row)
    assert_same_topk(body["topk"], pt_row, tolerance=1e-4)  # the export's own tolerance against PyTorch


def metric(text: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_model_card_health_and_prometheus_metrics(client, predictor, shared_video):
    card = client.get("/v1/model").json()
    assert card["classes"] == predictor.classes and card["num_classes"] == len(predictor.classes)
    assert (card["clip_len"], card["input_size"], card["version"], card["frame_rate"]) == (4, 32, __version__, None)
    assert card["limits"]["workers"] == 2 and card["head"] == "gru"
    assert client.get("/healthz").json() == {"status": "ok", "streams": 0}
    before = client.get("/metrics").text
    assert upload(client, shared_video("short_32frames.mp4")).status_code == 200
    assert upload(client, shared_video("corrupted.mp4")).status_code == 422
    response = client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    after = response.text
    ok = {"route": "/v1/predict", "method": "POST", "status": "200"}
    assert metric(after, "videoseq_requests_total", **ok) == metric(before, "videoseq_requests_total", **ok) + 1
    assert metric(after, "videoseq_errors_total", route="/v1/predict", code="undecodable_video") >= 1
    assert metric(after, "videoseq_request_seconds_count", route="/v1/predict") >= 2
    assert metric(after, "videoseq_request_seconds_sum", route="/v1/predict") > 0
    assert "videoseq_stream_frames_per_second" in after and "videoseq_streams_active" in after


def multipart(data: bytes, name: str = "clip.avi") -> tuple[bytes, str]:
    boundary = "videoseqboundary"
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            f"Content-Type: video/x-msvideo\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def send_file(client, query="", *, video=None, name=None, data=None, **kwargs):
    if video is not None:
        return upload(client, video, query, name)
    if data is not None:
        return client.post(f"/v1/predict{query}", files={"file": (name, data)})
    return client.post(f"/v1/predict{query}", **kwargs)


UCF = "ucf_like_320x240.avi"
# (limits, query, what is sent, status, code, words the message must hold)
REFUSALS = [
    ({}, "", {"content": b"raw", "headers": {"content-type": "video/mp4"}}, 415, "not_multipart", ["multipart"]),
    ({}, "", {"files": {"video": ("a.avi", b"1234")}}, 422, "no_file", ["'file'", "video"]),
    ({}, "", {"files": [("file", ("a.avi", b"1")), ("file", ("b.avi", b"2"))]}, 400, "bad_multipart", ["files"]),
    ({"max_upload_mb": 0.01}, "", {"video": UCF}, 413, "upload_too_large", ["0.01 MB", "--max-upload-mb"]),
    ({}, "", {"video": "corrupted.mp4"}, 422, "undecodable_video", ["corrupted.mp4"]),
    ({}, "", {"data": b"not a video at all", "name": "notes.mp4"}, 422, "undecodable_video", ["notes.mp4"]),
    ({"max_duration": 2}, "", {"video": UCF}, 422, "video_too_long", ["6.6 s", "--max-duration"]),
    ({"max_pixels": 320 * 240 - 1}, "", {"video": UCF}, 422, "too_many_pixels", ["320x240", "--max-pixels"]),
    ({"timeout": 0.001}, "", {"video": UCF}, 504, "timeout", ["0.001 s", "--timeout"]),
    ({}, "?topk=0", {"video": UCF}, 422, "invalid_parameter", ["topk='0'", ">= 1"]),
    ({}, "?topk=99", {"video": UCF}, 422, "invalid_parameter", ["topk='99'", "<= "]),
    ({}, "?topk=two", {"video": UCF}, 422, "invalid_parameter", ["topk='two'", "integer"]),
    ({}, "?window=-1", {"video": UCF}, 422, "invalid_parameter", ["window='-1'", "> 0"]),
    ({}, "?window=nan", {"video": UCF}, 422, "invalid_parameter", ["window='nan'", "finite"]),
    ({}, "?stride=1", {"video": UCF}, 422, "invalid_parameter", ["stride", "needs window"]),
    ({}, "?windw=1", {"video": UCF}, 422, "invalid_parameter", ["'windw'", "window"]),
    ({}, "?window=1&threshold=2", {"video": UCF}, 422, "invalid_parameter", ["threshold", "[0, 1]"]),
    ({}, "?window=1&background=Nope", {"video": UCF}, 422, "invalid_parameter", ["'Nope'"]),
    ({}, "?window=1&method=median", {"video": UCF}, 422, "invalid_parameter", ["'median'", "majority"]),
]


@pytest.mark.parametrize("limits, query, sent, status, code, words", REFUSALS,
                         ids=[f"{r[4]}-{i}" for i, r in enumerate(REFUSALS)])
def test_every_refusal_is_a_json_error_that_names_the_problem(predictor, shared_video, limits, query, sent, status,
                                                               code, words):
    sent = dict(sent)
    if "video" in sent:
        sent["video"] = shared_video(sent["video"])
    with TestClient(create_app(predictor, ServeLimits(**limits)), raise_server_exceptions=False) as c:
        response = send_file(c, query, **sent)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert (error["status"], error["code"]) == (status, code)
    assert all(word in error["message"] for word in words), error["message"]
    assert "Traceback" not in response.text


def test_an_upload_without_a_length_is_cut_off_at_the_limit(predictor, shared_video):
    body, content_type = multipart(shared_video(UCF).read_bytes())
    chunks = (body[i:i + 4096] for i in range(0, len(body), 4096))  # chunked: no Content-Length
    with TestClient(create_app(predictor, ServeLimits(max_upload_mb=0.01))) as c:
        response = c.post("/v1/predict", content=chunks, headers={"content-type": content_type})
    assert response.status_code == 413 and response.json()["error"]["code"] == "upload_too_large"


def test_unknown_routes_methods_and_internal_failures_are_json_too(predictor, shared_video, monkeypatch):
    with TestClient(create_app(predictor), raise_server_exceptions=False) as c:
        missing, wrong = c.get("/v2/predict"), c.get("/v1/predict")
        assert (missing.status_code, missing.json()["error"]["code"]) == (404, "not_found")
        assert "POST /v1/predict" in missing.json()["error"]["message"]
        assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "method_not_allowed")

        def broken(clips):
            raise ArithmeticError("a failing model")

        monkeypatch.setattr(predictor, "predict_clips", broken)
        response = upload(c, shared_video("short_32frames.mp4"))
    assert response.status_code == 500 and response.json()["error"]["code"] == "internal_error"
    assert "ArithmeticError" in response.json()["error"]["message"] and "Traceback" not in response.text


def test_model_work_leaves_the_event_loop_free(predictor, shared_video, monkeypatch):
    started, release = threading.Event(), threading.Event()
    real = predictor.predict_clips

    def held(clips):
        started.set()
        assert release.wait(30)
        return real(clips)

    video = shared_video("short_32frames.mp4")  # here, not in the thread: a missing clip skips the test
    monkeypatch.setattr(predictor, "predict_clips", held)
    app = create_app(predictor, ServeLimits(workers=1))
    assert app.state.serve.pool._max_workers == 1
    with TestClient(app) as c:
        answers = {}
        worker = threading.Thread(target=lambda: answers.update(r=upload(c, video)))
        worker.start()
        assert started.wait(30)  # the upload is inside the model, in the pool
        health = c.get("/healthz")  # answered while the model works
        assert health.status_code == 200 and not answers
        release.set()
        worker.join(30)
    assert answers["r"].status_code == 200


def test_serve_binds_to_loopback_unless_told_otherwise():
    args = build_parser().parse_args(["serve", "best.pt"])
    assert (args.host, args.port, args.max_streams, args.timeout) == ("127.0.0.1", 8000, 4, 60.0)
    with pytest.raises(ValueError, match="max_streams"):
        ServeLimits(max_streams=0)


@pytest.mark.parametrize("argv, missing, module", [(["serve", "best.pt"], "fastapi", "videoseq.serve.app"),
                                                   (["bench", "serve", "best.pt"], "httpx2", "videoseq.bench.serve")])
def test_without_the_serve_extra_the_commands_say_what_to_install(argv, missing, module, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, missing, None)  # importing it now raises ImportError
    monkeypatch.delitem(sys.modules, module, raising=False)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"needs the serve extra ({missing} is missing): pip install 'videoseq[serve]'" in err, err
