"""The play server: one page and a small JSON/bytes API over one loaded Game (aiohttp).

Transport: one HTTP request per frame (POST .../step -> the frame's raw RGB bytes, what it shows in
headers). The page asks for the next frame only when the last one has arrived and its tick has come,
so a tab has at most one frame in flight: a machine that cannot keep up shows the rate it gets and
never queues frames. On 127.0.0.1 a keep-alive request costs well under a millisecond beside the
model's step, and every error is a plain HTTP status with one line of text.

    GET  /                                  the page
    GET  /api/info                          model, action set, videos, frame rate
    GET  /api/videos/{video}/starts         start frames with thumbnails (PNG data URLs)
    GET  /api/codes/{code}.png              a latent code's effect (a frame of the action sweep)
    POST /api/sessions {video, start}       a session from the real context before `start` -> {id, ...}
    GET  /api/sessions/{id}/frame           the frame shown now
    POST /api/sessions/{id}/step {action}   one frame under `action` (-1: none)
    POST /api/sessions/{id}/reset           back to the real context
    POST /api/sessions/{id}/record {on}     start recording, or stop and save GIF + replay JSON
    POST /api/sessions/{id}/close           free it (the page sends this when its tab closes)

Sessions are capped (`max_sessions`); one idle for `idle_s` is freed, so a tab that died without
saying so does not hold memory. Model calls run one at a time.
"""

from __future__ import annotations

import base64
import io
import json
import secrets
import time
from importlib import resources

from aiohttp import web
from PIL import Image

from latentwm.core.errors import PipelineError
from latentwm.play.game import Game, Session

MAX_BODY = 4096  # bytes of a request's JSON body


def png(frame) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG")
    return buf.getvalue()


def png_url(frame) -> str:
    return "data:image/png;base64," + base64.b64encode(png(frame)).decode()


def fail(status: int, message: str) -> web.HTTPException:
    """A 4xx whose body is the one line a person reads."""
    cls = {400: web.HTTPBadRequest, 404: web.HTTPNotFound, 409: web.HTTPConflict, 429: web.HTTPTooManyRequests}[status]
    return cls(text=message.splitlines()[0][:300] + "\n")


async def body(request, *keys: str) -> dict:
    """The request's JSON object with `keys`; 400 naming what is wrong otherwise."""
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise fail(400, f"request body over {MAX_BODY} bytes: send a small JSON object")
    try:
        data = json.loads(raw or b"{}")
    except ValueError:
        raise fail(400, "the body is not JSON: send an object such as {\"action\": 1}") from None
    if not isinstance(data, dict):
        raise fail(400, "the body must be a JSON object, e.g. {\"action\": 1}")
    missing = [k for k in keys if k not in data]
    if missing:
        wanted = ", ".join(f'"{k}": ...' for k in keys)
        raise fail(400, f"missing {', '.join(missing)} in the body: send {{{wanted}}}")
    return data


class Server:
    def __init__(self, game: Game, max_sessions: int = 4, idle_s: float = 120.0, fps: float | None = None):
        self.game, self.max_sessions, self.idle_s = game, max_sessions, idle_s
        self.fps = fps
        self.sessions: dict[str, Session] = {}
        self.page = resources.files("latentwm.play").joinpath("page.html").read_text()

    def call(self, fn, *args):
        """A model call, one at a time; bad input becomes a 400, never a dead server. It runs on the
        event loop's thread: one model serves every tab a step at a time anyway, so a worker thread
        would only add a hop (a step, tens of ms, holds the other requests back that long)."""
        try:
            return fn(*args)
        except (ValueError, PipelineError) as e:
            raise fail(400, str(e)) from None

    def session(self, request) -> Session:
        self.expire()
        s = self.sessions.get(request.match_info["sid"])
        if s is None:
            raise fail(404, f"no session {request.match_info['sid'][:40]!r} (closed, or idle over {self.idle_s:.0f} s): "
                            "start one from the page")
        s.seen = time.monotonic()
        return s

    def expire(self) -> None:
        now = time.monotonic()
        for sid in [k for k, s in self.sessions.items() if now - s.seen > self.idle_s]:
            del self.sessions[sid]

    def frame_response(self, s: Session, extra: dict | None = None) -> web.Response:
        g = self.game
        head = {"X-Frame": str(s.index), "X-Action": str(s.action), "X-Model-Ms": f"{getattr(s, 'model_ms', 0):.1f}",
                "X-Recording": "1" if s.recording is not None else "0", "Cache-Control": "no-store",
                "X-Width": str(s.frame.shape[1]), "X-Height": str(s.frame.shape[0]),
                "X-Action-Name": g.names[s.action] if 0 <= s.action < len(g.names) else "none"}
        if extra:
            head["X-Saved"] = json.dumps(extra)
        return web.Response(body=s.frame.tobytes(), content_type="application/octet-stream", headers=head)

    # routes
    async def index(self, request):
        return web.Response(text=self.page, content_type="text/html")

    async def info(self, request):
        g = self.game
        return web.json_response({
            "kind": g.kind, "actions": g.names, "context": g.context, "seed": g.seed,
            "fps": self.fps, "dynamics": str(g.paths["dynamics"]),  # null: each video's own (a session's "fps")
            "sampler": {"temperature": g.sampler.temperature, "guidance": g.sampler.guidance, "steps": g.sampler.steps},
            "videos": [{"id": k, "frames": v["n"], "fps": v["fps"]} for k, v in g.videos.items()],
            "sessions": len(self.sessions), "max_sessions": self.max_sessions})

    async def starts(self, request):
        vid = request.match_info["video"]
        try:
            starts = self.game.starts(vid)
        except KeyError as e:
            raise fail(404, e.args[0]) from None
        return web.json_response([{"start": s, "src": png_url(self.game.thumbnail(vid, s))} for s in starts])

    async def code(self, request):
        effects = self.game.effects
        try:
            frame = effects[int(request.match_info["code"])]
        except (KeyError, ValueError):
            raise fail(404, f"no latent code {request.match_info['code'][:20]!r}: this model's codes are 0..{len(effects) - 1}"
                       if effects else "this model has no latent codes") from None
        return web.Response(body=png(frame), content_type="image/png")

    async def open(self, request):
        data = await body(request, "video", "start")
        self.expire()
        if len(self.sessions) >= self.max_sessions:
            raise fail(429, f"{self.max_sessions} sessions are open (one per tab): close a tab, or start the server with "
                            "a larger --max-sessions")
        try:
            self.game.video(data["video"])
        except KeyError as e:
            raise fail(404, e.args[0]) from None
        s = self.call(Session, self.game, data["video"], data["start"])
        sid = secrets.token_urlsafe(8)
        self.sessions[sid] = s
        return web.json_response({"id": sid, "video": s.vid, "start": s.start, "width": int(s.frame.shape[1]),
                                  "height": int(s.frame.shape[0]), "fps": self.fps or self.game.video(s.vid)["fps"]})

    async def frame(self, request):
        return self.frame_response(self.session(request))

    async def step(self, request):
        s = self.session(request)
        data = await body(request, "action")
        t = time.perf_counter()
        self.call(s.step, data["action"])
        s.model_ms = 1000 * (time.perf_counter() - t)
        if s.full:  # the recording's cap: saved, and the page told
            return self.frame_response(s, self.call(s.record, False))
        return self.frame_response(s)

    async def reset(self, request):
        s = self.session(request)
        # a recording in progress is saved first: its replay needs the actions the reset drops
        saved = self.call(s.record, False) if s.recording is not None else None
        self.call(s.reset)
        return self.frame_response(s, saved)

    async def record(self, request):
        s = self.session(request)
        on = (await body(request, "on"))["on"]
        if not isinstance(on, bool):
            raise fail(400, f"on {str(on)[:20]!r}: send true to start recording, false to stop and save")
        return web.json_response(self.call(s.record, on))

    async def close(self, request):
        self.sessions.pop(request.match_info["sid"], None)
        return web.Response(status=204)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY)
        sid = "/api/sessions/{sid}"
        app.add_routes([
            web.get("/", self.index), web.get("/api/info", self.info),
            web.get("/api/videos/{video}/starts", self.starts), web.get("/api/codes/{code}.png", self.code),
            web.post("/api/sessions", self.open), web.get(sid + "/frame", self.frame),
            web.post(sid + "/step", self.step), web.post(sid + "/reset", self.reset),
            web.post(sid + "/record", self.record), web.post(sid + "/close", self.close),
        ])
        return app


def serve(game: Game, host: str = "127.0.0.1", port: int = 8765, log=print, **kw) -> None:
    server = Server(game, **kw)
    acts = f"{game.kind} actions {', '.join(game.names)}" if game.names else "no actions (the model plays its own future)"
    log(f"[play] {acts}; {len(game.videos)} test videos; open http://{host}:{port}/ (Ctrl-C stops)")
    try:
        web.run_app(server.app(), host=host, port=port, print=None, access_log=None)
    except OSError as e:  # the port taken, or an address this machine does not have
        raise PipelineError(f"cannot listen on {host}:{port} ({e.strerror or e}): pass another --port or --host") from None
