"""The play page (python -m latentwm.play) on real pipeline results, over plain HTTP and in a real
headless Chromium: bad requests get one-line 4xx and the server stays up, sessions are capped and
freed, pause stops the frames, a recording replays through steer.py to the same pixels, latent codes
are listed with what they do and played, and (on a given-action model of the synthetic default)
the keys move the player.

The results: the default pipeline's (test_default_config's run: no actions) and the tiny latent-action
run's. The player test needs the synthetic default trained with `dynamics.actions: given` (about 10
minutes on 2 cores, more than the suite can spend: a tiny model's player does not follow the keys):
it runs when LATENTWM_PLAY_GIVEN names that run's results folder, and skips otherwise, e.g.

    snakemake --cores 2 --config 'dynamics={"actions": "given"}'
    LATENTWM_PLAY_GIVEN=results pytest tests/test_play.py

LATENTWM_PLAY_NONE and LATENTWM_PLAY_LATENT stand in for the other two runs' results the same way.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from browser import chrome, why_not
from conftest import ROOT
from PIL import Image

pytestmark = pytest.mark.slow
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def results(request, env: str, fixture: str) -> Path:
    """A results folder: the one an environment variable names, else the fixture's run's."""
    if os.environ.get(env):
        return Path(os.environ[env])
    return request.getfixturevalue(fixture) / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """`python -m latentwm.play` on a results folder, in a subprocess, until closed."""

    def __init__(self, results, *args: str):
        self.port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "latentwm.play", "--results", str(results), "--port",
                                      str(self.port), "--threads", "1", *args], env=ENV, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        for _ in range(300):
            if self.proc.poll() is not None:
                raise AssertionError(self.proc.stdout.read())
            try:
                self.get("/api/info")
                break
            except OSError:
                time.sleep(0.1)
        self.url = f"http://127.0.0.1:{self.port}/"

    def request(self, method: str, path: str, body=None) -> tuple[int, bytes, dict]:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        c.request(method, path, body if isinstance(body, (str, bytes, type(None))) else json.dumps(body))
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())

    def get(self, path: str):
        status, data, _ = self.request("GET", path)
        assert status == 200, data
        return json.loads(data)

    def close(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def none_server(request):
    s = Served(results(request, "LATENTWM_PLAY_NONE", "default_run"), "--max-sessions", "2")
    yield s
    s.close()


@pytest.fixture(scope="module")
def latent_server(request):
    s = Served(results(request, "LATENTWM_PLAY_LATENT", "latent_run"), "--idle-seconds", "2")
    yield s
    s.close()


@pytest.fixture(scope="module")
def given_server():
    if not os.environ.get("LATENTWM_PLAY_GIVEN"):
        pytest.skip("needs the synthetic default trained with dynamics.actions: given (set LATENTWM_PLAY_GIVEN "
                    "to its results folder; see this module's docstring)")
    s = Served(os.environ["LATENTWM_PLAY_GIVEN"])
    yield s
    s.close()


@pytest.fixture(scope="module")
def browser():
    why = why_not()
    if why:
        pytest.skip(why)
    d = chrome()
    yield d
    d.quit()


def player_xy(frame: np.ndarray) -> tuple[float, float] | None:
    """The white player square's (column, row) in an (H, W, 3) frame: where the whiteness (the
    darkest channel) summed over 5x5 px peaks below the HUD's digits; None when nothing there is near white."""
    hud = frame.shape[0] // 6
    white = np.clip(frame[hud:].min(-1).astype(float) - 150, 0, None)
    if white.max() < 40:
        return None
    k = np.ones(5) / 5
    smooth = np.apply_along_axis(np.convolve, 0, np.apply_along_axis(np.convolve, 1, white, k, "same"), k, "same")
    y, x = np.unravel_index(smooth.argmax(), smooth.shape)
    return float(x), float(y + hud)


def player_x(frame: np.ndarray) -> float | None:
    xy = player_xy(frame)
    return None if xy is None else xy[0]


def test_bad_requests_get_one_line_4xx_and_the_server_stays_up(none_server):
    s = none_server
    info = s.get("/api/info")
    video = info["videos"][0]["id"]
    status, data, _ = s.request("POST", "/api/sessions", {"video": video, "start": 8})
    assert status == 200, data
    sid = json.loads(data)["id"]
    # no --fps: each session plays at its video's own rate (a store's rate, frames.fps or slower)
    assert info["fps"] is None and json.loads(data)["fps"] == info["videos"][0]["fps"] > 0
    cases = [
        ("GET", "/api/videos/nope/starts", None, 404, "unknown video 'nope'"),
        ("GET", "/api/videos/..%2F..%2Fsplits.json/starts", None, 404, "unknown video"),
        ("GET", "/../../etc/passwd", None, 404, ""),
        ("GET", "/api/codes/0.png", None, 404, "this model has no latent codes"),
        ("POST", "/api/sessions", {"video": "nope", "start": 8}, 404, "unknown video"),
        ("POST", "/api/sessions", {"video": video, "start": 10**6}, 400, f"start 1000000 of {video}"),
        ("POST", "/api/sessions", {"video": video, "start": "8"}, 400, "give an integer frame"),
        ("POST", "/api/sessions", {"video": video}, 400, "missing start"),
        ("POST", f"/api/sessions/{sid}/step", "{not json", 400, "the body is not JSON"),
        ("POST", f"/api/sessions/{sid}/step", "[1]", 400, "must be a JSON object"),
        ("POST", f"/api/sessions/{sid}/step", {"action": 2}, 400, "this model takes no actions"),
        ("POST", f"/api/sessions/{sid}/step", {"action": [1]}, 400, "give an integer id"),
        ("POST", f"/api/sessions/{sid}/step", {}, 400, "missing action"),
        ("POST", f"/api/sessions/{sid}/step", "x" * 5000, 400, "over 4096 bytes"),
        ("GET", f"/api/sessions/{sid}/step", None, 405, ""),
        ("POST", "/api/sessions/nosuch/step", {"action": -1}, 404, "no session 'nosuch'"),
        ("POST", f"/api/sessions/{sid}/record", {"on": "yes"}, 400, "send true to start"),
        ("POST", f"/api/sessions/{sid}/record", {"on": False}, 400, "not recording"),
    ]
    for method, path, body, want, text in cases:
        status, data, _ = s.request(method, path, body)
        assert status == want, (method, path, status, data)
        assert text in data.decode() and len(data.decode().strip().splitlines()) <= 1, (path, data)
    status, frame, head = s.request("POST", f"/api/sessions/{sid}/step", {"action": -1})  # still serving
    assert status == 200 and len(frame) == 64 * 64 * 3 and head["X-Action-Name"] == "none" and head["X-Frame"] == "1"
    assert s.request("POST", f"/api/sessions/{sid}/record", {"on": True})[0] == 200
    for _ in range(2):
        s.request("POST", f"/api/sessions/{sid}/step", {"action": -1})
    status, frame, head = s.request("POST", f"/api/sessions/{sid}/reset")  # a reset saves the recording first
    assert status == 200 and head["X-Frame"] == "0" and json.loads(head["X-Saved"])["saved"]["frames"] == 2
    s.request("POST", f"/api/sessions/{sid}/close")


def test_sessions_are_capped_and_a_closed_one_is_freed(none_server):
    s = none_server
    video = s.get("/api/info")["videos"][0]["id"]
    ids = [json.loads(s.request("POST", "/api/sessions", {"video": video, "start": 8})[1])["id"] for _ in range(2)]
    status, data, _ = s.request("POST", "/api/sessions", {"video": video, "start": 8})
    assert status == 429 and "2 sessions are open" in data.decode()
    assert s.request("POST", f"/api/sessions/{ids[0]}/close")[0] == 204
    status, data, _ = s.request("POST", "/api/sessions", {"video": video, "start": 8})
    assert status == 200 and s.get("/api/info")["sessions"] == 2
    for sid in (ids[1], json.loads(data)["id"]):
        s.request("POST", f"/api/sessions/{sid}/close")
    assert s.get("/api/info")["sessions"] == 0


def canvas(d) -> np.ndarray:
    data = d.execute_script("const c = document.getElementById('screen');"
                            "return [c.width, c.height, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];")
    w, h, px = data
    return np.array(px, np.uint8).reshape(h, w, 4)[..., :3]


def shown(d) -> int:
    return int(d.find_element("id", "frame").text)


def wait_for(cond, timeout=60.0, what=""):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def centred_start(s: Served) -> tuple[str, int]:
    """A start frame whose player is 8 px or more from the walls: room to move both ways."""
    for v in s.get("/api/info")["videos"]:
        for t in s.get(f"/api/videos/{v['id']}/starts"):
            img = np.asarray(Image.open(io.BytesIO(base64.b64decode(t["src"].split(",", 1)[1]))).convert("RGB"))
            x = player_x(img)
            if x is not None and 12 <= x <= 52:
                return v["id"], t["start"]
    raise AssertionError("no start frame with the player near the middle")


def hold(d, key, frames: int) -> np.ndarray:
    """Hold `key` until `frames` more frames are shown; the frame then."""
    from selenium.webdriver.common.action_chains import ActionChains

    first = shown(d)
    ActionChains(d).key_down(key).perform()
    wait_for(lambda: shown(d) >= first + frames, what=f"{frames} frames")
    out = canvas(d)
    ActionChains(d).key_up(key).perform()
    return out


def open_page(d, s: Served, video: str, start: int) -> None:
    from selenium.webdriver.support.ui import Select

    def playing():
        return d.execute_script("return [window.playStats.video, window.playStats.start]")

    d.get(s.url)
    wait_for(lambda: playing()[0], what="the first session")
    if playing()[0] != video:
        Select(d.find_element("id", "video")).select_by_value(video)
        wait_for(lambda: playing()[0] == video, what=f"a session of {video}")
    d.find_element("css selector", f"#starts img[data-start='{start}']").click()
    wait_for(lambda: playing() == [video, start], what=f"a session from frame {start}")


def replays(saved_text: str, tmp_path) -> None:
    """The recording the page saved replays through steer.py to the same pixels and the same GIF."""
    replay_json = next(w for w in saved_text.split() if w.endswith(".json"))
    p = subprocess.run([sys.executable, str(ROOT / "workflow_scripts/steer.py"), "--replay", replay_json, "--out",
                        str(tmp_path / "replay.gif"), "--threads", "1"], capture_output=True, text=True, env=ENV)
    assert p.returncode == 0 and "the same pixels as the recording" in p.stderr + p.stdout, p.stderr[-2000:]
    assert (tmp_path / "replay.gif").read_bytes() == Path(replay_json[: -len(".json")] + ".gif").read_bytes()


def test_the_page_plays_pauses_steps_records_and_frees_its_session(none_server, browser, tmp_path):
    s, d = none_server, browser
    video = s.get("/api/info")["videos"][-1]["id"]
    start = s.get(f"/api/videos/{video}/starts")[1]["start"]
    open_page(d, s, video, start)
    assert "plays its own future" in d.find_element("id", "mode").text
    wait_for(lambda: shown(d) >= 5, what="5 frames")
    assert float(d.find_element("id", "fps").text) > 0 and d.find_element("id", "action").text == "none"

    d.find_element("id", "pause").click()  # pause: no more frames
    time.sleep(0.3)
    paused = (shown(d), d.execute_script("return window.playStats.frames"))
    time.sleep(1.0)
    assert (shown(d), d.execute_script("return window.playStats.frames")) == paused
    d.find_element("id", "step").click()
    wait_for(lambda: shown(d) == paused[0] + 1, what="one frame")
    d.find_element("id", "reset").click()
    wait_for(lambda: shown(d) == 0, what="the reset")
    truth = np.asarray(Image.open(io.BytesIO(base64.b64decode(
        next(t for t in s.get(f"/api/videos/{video}/starts") if t["start"] == start)["src"].split(",", 1)[1]))))
    assert np.array_equal(canvas(d), truth[..., :3]), "after a reset the page shows the real frame before the start"

    d.find_element("id", "record").click()
    d.find_element("id", "pause").click()
    wait_for(lambda: shown(d) >= 6, what="6 frames")
    d.find_element("id", "record").click()
    wait_for(lambda: "saved" in d.find_element("id", "saved").text, what="the saved recording")
    replays(d.find_element("id", "saved").text, tmp_path)

    before = s.get("/api/info")["sessions"]
    d.get("about:blank")  # the tab leaves: its session is freed
    wait_for(lambda: s.get("/api/info")["sessions"] == before - 1, timeout=10, what="the session to close")


def test_keys_name_the_doom_actions_combined_and_fast(none_server, browser):
    """The page's keys on the Doom clips' action set (the model's names swapped in, the page paused):
    a key names its action, two keys a combined one, Shift the _fast form where the set has one."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    from latentwm.data.doom_demo import ACTIONS

    s, d = none_server, browser
    video = s.get("/api/info")["videos"][0]["id"]
    open_page(d, s, video, s.get(f"/api/videos/{video}/starts")[0]["start"])
    d.find_element("id", "pause").click()
    d.execute_script("window.playStats.info.actions = arguments[0]; legend(window.playStats.info)", list(ACTIONS))
    assert "Shift + key" in d.find_element("id", "keys").text

    def action(*keys) -> str:
        chain = ActionChains(d)
        for k in keys:
            chain.key_down(k)
        chain.perform()
        name = d.execute_script("return window.playStats.info.actions[currentAction()]")
        chain = ActionChains(d)
        for k in reversed(keys):
            chain.key_up(k)
        chain.perform()
        return name

    assert action() == "noop" and action(Keys.SHIFT) == "noop"
    assert action(Keys.ARROW_LEFT) == "turn_left" and action(Keys.SHIFT, Keys.ARROW_LEFT) == "turn_left_fast"
    assert action("w", "d") == "forward_turn_right" and action(Keys.SHIFT, "w", "d") == "forward_turn_right_fast"
    assert action(Keys.SHIFT, "w") == "forward", "no _fast form: the action itself"
    assert d.execute_script("return window.playStats.held") == []


def test_latent_codes_are_listed_with_their_effect_and_played(latent_server, browser):
    from selenium.webdriver.common.action_chains import ActionChains

    s, d = latent_server, browser
    info = s.get("/api/info")
    idle = json.loads(s.request("POST", "/api/sessions", {"video": info["videos"][0]["id"], "start": 8})[1])["id"]
    time.sleep(2.5)  # a session idle past --idle-seconds is freed
    status, data, _ = s.request("POST", f"/api/sessions/{idle}/step", {"action": 0})
    assert status == 404 and "idle over 2 s" in data.decode()
    assert info["kind"] == "latent" and info["actions"] == [f"code {k}" for k in range(4)]
    for k in range(4):
        status, png, head = s.request("GET", f"/api/codes/{k}.png")
        assert status == 200 and png[:8] == b"\x89PNG\r\n\x1a\n"
    assert s.request("GET", "/api/codes/4.png")[0] == 404
    video = info["videos"][0]["id"]
    open_page(d, s, video, s.get(f"/api/videos/{video}/starts")[0]["start"])
    wait_for(lambda: d.execute_script("return Array.from(document.querySelectorAll('#keys img'))"
                                      ".filter(i => i.complete && i.naturalWidth > 0).length") == 4, what="4 code pictures")
    ActionChains(d).key_down("2").perform()
    first = shown(d)
    wait_for(lambda: shown(d) >= first + 3 and d.find_element("id", "action").text == "code 1", what="code 1 played")
    ActionChains(d).key_up("2").perform()
    assert d.find_element("id", "error").text == ""


def test_the_keys_move_the_given_action_player(given_server, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    s, d = given_server, browser
    video, start = centred_start(s)
    open_page(d, s, video, start)
    d.find_element("id", "pause").click()
    d.find_element("id", "reset").click()
    wait_for(lambda: shown(d) == 0, what="the reset")
    x0 = player_x(canvas(d))
    d.find_element("id", "pause").click()
    right = player_x(hold(d, Keys.ARROW_RIGHT, 6))
    d.find_element("id", "reset").click()
    wait_for(lambda: shown(d) < 3, what="the reset")
    left = player_x(hold(d, Keys.ARROW_LEFT, 6))
    assert None not in (x0, right, left), (x0, right, left)
    assert right > x0 + 3 and left < x0 - 3, f"player x: start {x0:.1f}, after right {right:.1f}, after left {left:.1f}"
    assert d.find_element("id", "error").text == ""
    d.find_element("id", "record").click()
    hold(d, Keys.ARROW_DOWN, 5)
    d.find_element("id", "record").click()
    wait_for(lambda: "saved" in d.find_element("id", "saved").text, what="the saved recording")
    replays(d.find_element("id", "saved").text, tmp_path)
