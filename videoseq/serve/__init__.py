"""``videoseq serve``: a trained model behind HTTP and WebSocket, with a browser page.

Rooms: ``limits`` (the caps and the JSON error every refusal becomes), ``params``
(query parameters, validated alike for HTTP and WebSocket), ``uploads`` (a
multipart upload to a temporary file, checked and predicted with the same
``predict.predict_spans`` as ``videoseq predict``), ``session`` (one WebSocket
stream: JPEG frames in, ``Predictor.step`` with a state of its own, results out,
frames dropped when the client outruns the model), ``metrics`` (Prometheus),
``app`` (the FastAPI routes and ``serve_checkpoint``), ``bench`` (the loopback
load benchmark) and ``static/`` (the page: plain HTML and JavaScript).

Model work runs in a bounded thread pool, never on the event loop; torch runs one
intra-op thread, so each pool worker keeps one core busy.
"""
