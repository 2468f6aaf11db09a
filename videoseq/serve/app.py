"""The FastAPI app of ``videoseq serve`` and the command that runs it under uvicorn.

Routes: ``GET /`` (the page), ``/static/*``, ``GET /v1/model``, ``GET /healthz``,
``GET /metrics`` (Prometheus text), ``POST /v1/predict`` (``uploads``) and
``WS /v1/stream`` (``session``). Every refusal is a JSON error
(``{"error": {"status", "code", "message"}}``, see ``limits.ApiError``); an
unexpected failure is a JSON 500 that names the exception type, and its traceback
goes to the server log only. Model work runs in thread pools of
``limits.workers`` threads, one for uploads and one for stream frames (a live frame
never waits behind a long upload); the event loop only parses, schedules and sends.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from fastapi import FastAPI, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from videoseq import __version__
from videoseq.predict import Predictor
from videoseq.serve.limits import ApiError, ServeLimits
from videoseq.serve.metrics import CONTENT_TYPE, ServeMetrics
from videoseq.serve.params import predict_params, stream_params
from videoseq.serve.session import StreamSession
from videoseq.serve.uploads import predict_upload, receive_upload

STATIC = Path(__file__).resolve().parent / "static"
ROUTES = "GET /, GET /v1/model, POST /v1/predict, WS /v1/stream, GET /healthz, GET /metrics"
# The page loads nothing but its own files: no CDN, no fonts, no analytics.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob: mediastream:; "
                               "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
}
log = logging.getLogger("videoseq.serve")


@dataclass
class ServerState:
    predictor: Predictor
    limits: ServeLimits
    name: str
    pool: ThreadPoolExecutor = field(init=False)  # uploads
    stream_pool: ThreadPoolExecutor = field(init=False)  # stream frames: never behind a long upload
    metrics: ServeMetrics = field(default_factory=ServeMetrics)
    streams: int = 0

    def __post_init__(self) -> None:
        self.pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="videoseq-upload")
        self.stream_pool = ThreadPoolExecutor(self.limits.workers, thread_name_prefix="videoseq-stream")


def model_card(state: ServerState) -> dict:
    """``GET /v1/model``: what the model expects and what the server accepts."""
    p, d, m = state.predictor, state.predictor.config.data, state.predictor.config.model
    return {"name": state.name, "task": m.task, "classes": p.classes, "num_classes": len(p.classes),
            "clip_len": d.frames, "frame_rate": d.fps, "stride": d.stride, "sampling": d.sampling,
            "input_size": d.size, "test_views": d.test_views, "backbone": m.backbone, "head": m.head,
            "stream_interval_s": p.stream_interval(None), "version": __version__, "limits": state.limits.card()}


def route_label(scope: dict) -> str:
    """The route template (``/v1/predict``), never the raw path, so labels stay few."""
    route = scope.get("route")
    if route is not None:
        return route.path
    return "/static" if scope.get("path", "").startswith("/static/") else "other"


class MetricsMiddleware:
    """Counts every HTTP request by route, method and status, and times it."""

    def __init__(self, app, metrics: ServeMetrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception that escapes becomes a 500 outside this middleware

        async def send_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.request(route_label(scope), scope["method"], status, time.perf_counter() - start)


def add_error_handlers(app: FastAPI, metrics: ServeMetrics) -> None:
    def respond(request: Request, err: ApiError) -> JSONResponse:
        metrics.error(route_label(request.scope), err.code)
        return JSONResponse({"error": err.body()}, status_code=err.status)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError) -> JSONResponse:
        return respond(request, err)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        if err.status_code == 404:
            return respond(request, ApiError(404, "not_found", f"no such page or route: {request.url.path}; "
                                             f"the server has {ROUTES}"))
        if err.status_code == 405:
            return respond(request, ApiError(405, "method_not_allowed", f"{request.method} is not allowed on "
                                             f"{request.url.path}; the server has {ROUTES}"))
        return respond(request, ApiError(err.status_code, "http_error", str(err.detail)))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return respond(request, ApiError(422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}"))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=err)
        return respond(request, ApiError(500, "internal_error", f"internal error ({type(err).__name__}) on "
                                         f"{request.url.path}; the server log has the details"))


async def run_upload(state: ServerState, request: Request) -> dict:
    """Parameters, then the upload, then the model in a worker thread, within ``limits.timeout``."""
    params = predict_params(request.query_params, state.predictor.classes)
    upload = await receive_upload(request, state.limits)
    cancel = threading.Event()
    work = asyncio.get_running_loop().run_in_executor(state.pool, predict_upload, state.predictor, upload, params,
                                                      state.limits, cancel)
    try:
        return await asyncio.wait_for(work, state.limits.timeout)
    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
        cancel.set()
        raise ApiError(504, "timeout", f"the prediction took longer than the {state.limits.timeout:g} s limit "
                       "(serve --timeout), waiting for a model thread included; send a shorter video, a larger "
                       "stride, or try again when the server is less busy") from None


async def open_stream(websocket: WebSocket, state: ServerState) -> None:
    """Accept, check the parameters and the stream limit (a JSON error, then close), run the session."""
    await websocket.accept()
    try:
        params = stream_params(websocket.query_params, state.predictor.classes)
        check_streamable(state)
    except ApiError as err:
        state.metrics.error("/v1/stream", err.code)
        await websocket.send_json({"type": "error", **err.body()})
        await websocket.close(code=1013 if err.status == 429 else 1008, reason=err.code)
        return
    state.streams += 1
    state.metrics.streams.inc()
    try:
        await StreamSession(websocket, state.predictor, params, state.limits, state.stream_pool, state.metrics).run()
    finally:
        state.streams -= 1
        state.metrics.streams.dec()


def check_streamable(state: ServerState) -> None:
    if state.streams >= state.limits.max_streams:
        raise ApiError(429, "too_many_streams", f"{state.streams} streams are open, the limit (serve --max-streams); "
                       "close one or try again later")
    if not state.predictor.classifies:
        raise ApiError(422, "not_a_classifier", f"{state.name} writes captions; streams give class labels only")
    parts = getattr(state.predictor.model, "paths", {})  # an ONNX export needs its per-frame and head parts
    missing = [str(path) for part, path in parts.items() if part != "clip" and not Path(path).is_file()]
    if missing:
        raise ApiError(422, "no_streaming_parts", f"{missing[0]} is missing: streaming an ONNX model needs its "
                       "parts; export with videoseq export CHECKPOINT --format onnx --streaming")


def create_app(predictor: Predictor, limits: ServeLimits | None = None, *, name: str = "model") -> FastAPI:
    """The app for one loaded model (tests drive it with FastAPI's TestClient)."""
    state = ServerState(predictor, limits or ServeLimits(), name)
    state.metrics.model.info({"name": name, "task": predictor.config.model.task, "version": __version__})

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        for pool in (state.pool, state.stream_pool):
            pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="videoseq", version=__version__, docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    app.state.serve = state
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    add_error_handlers(app, state.metrics)
    card = model_card(state)
    app.add_api_route("/", lambda: FileResponse(STATIC / "index.html", headers=PAGE_HEADERS), methods=["GET"])
    app.add_api_route("/healthz", lambda: {"status": "ok", "streams": state.streams}, methods=["GET"])
    app.add_api_route("/v1/model", lambda: card, methods=["GET"])
    app.add_api_route("/metrics", lambda: Response(state.metrics.text(), media_type=CONTENT_TYPE), methods=["GET"])

    async def predict(request: Request) -> dict:
        return await run_upload(state, request)

    async def stream(websocket: WebSocket) -> None:
        await open_stream(websocket, state)

    app.add_api_route("/v1/predict", predict, methods=["POST"])
    app.add_api_websocket_route("/v1/stream", stream)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def serve_checkpoint(checkpoint: str | Path, *, host: str = "127.0.0.1", port: int = 8000,
                     limits: ServeLimits | None = None, device: str = "auto") -> None:
    """``videoseq serve``: load the model, print where to go, run uvicorn until Ctrl-C."""
    import uvicorn

    torch.set_num_threads(1)  # one core per pool worker; ONNX Runtime sessions take the same count
    limits = limits or ServeLimits()
    predictor = Predictor.from_checkpoint(checkpoint, device=device)
    app = create_app(predictor, limits, name=Path(checkpoint).name)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {checkpoint} ({len(predictor.classes)} classes, {predictor.clip_len} frames of "
          f"{predictor.config.data.size} px), {limits.workers} model thread(s) for uploads and as many for streams\n"
          f"  open http://{shown}:{port}/ in a browser; API: {ROUTES}", flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {host}: every machine that reaches this one can use the model", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", ws_max_size=2 * limits.max_frame_bytes + 4096,
                timeout_graceful_shutdown=5)
