"""``videoseq serve``: a trained model behind HTTP and WebSocket, with a browser page.

Rooms: ``limits`` (the caps and the JSON error every refusal becomes), ``params``
(query parameters, validated alike for HTTP and WebSocket), ``uploads`` (a
multipart upload to a temporary file, checked and predicted with the same
``predict.predict_spans`` as ``videoseq predict``), ``session`` (one WebSocket
stream: JPEG frames in, ``Predictor.step`` with a state of its own, results out,
frames dropped when the client outruns the model), ``metrics`` (Prometheus),
``app`` (the FastAPI routes and ``serve_checkpoint``) and ``static/`` (the page:
plain HTML and JavaScript); the loopback load benchmark is ``bench/serve.py``.

Model work runs in bounded thread pools (uploads, stream frames), never on the event
loop; torch runs one intra-op thread, so each worker keeps one core busy.
"""


from videoseq.errors import UsageError


def missing_extra(command: str, err: ImportError) -> UsageError:
    """The error of a command that needs the serve extra (FastAPI, uvicorn, ...) when a part is not installed."""
    return UsageError(f"{command} needs the serve extra ({err.name} is missing): pip install 'videoseq[serve]'")
