"""The play page (python -m latentwm.play) on real pipeline results, over plain HTTP and in a real
headless Chromium: the keys steer the generator's player, pause stops the frames, a recording
replays through steer.py to the same pixels, bad requests get one-line 4xx and the server stays up."""

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
from conftest import ROOT, snakemake, tiny_config
from PIL import Image

pytestmark = pytest.mark.slow
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}


def given_config() -> dict:
    """The generator's clips at 64 px and a given-action model trained just long enough that its
    player follows the keys (the tiny config's 32 px player is a sub-cell smudge)."""
    cfg = tiny_config()
    cfg["sources"][0]["generator"].update(size=64, clips=8, frames=48)
    cfg["frames"].update(height=64, width=64)
    cfg["tokenizer"]["train"].update(steps=300)
    cfg["dynamics"].update(actions="given", objective={"shortcut": False}, model={
        "size": "tiny", "conv_width": 32, "conv_blocks": 2, "conv_frames": 2, "k_max": 4})
    cfg["dynamics"]["data"].update(batch_size=16, window=3)
    cfg["dynamics"]["train"].update(steps=600, warmup=20, log_every=100, checkpoint_every=300)
    cfg["evaluations"]["default"]["samplers"] = [{"name": "euler4", "kind": "euler", "steps": 4}]
    return cfg


@pytest.fixture(scope="module")
def given_run(tmp_path_factory):
    if os.environ.get("LATENTWM_PLAY_RESULTS"):  # a finished run's results instead (the synthetic default
        return Path(os.environ["LATENTWM_PLAY_RESULTS"])  # with dynamics.actions: given, say)
    workdir = tmp_path_factory.mktemp("play_given")
    snakemake(workdir, given_config(), "--cores", "2")
    return workdir / "results"


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
def given_server(given_run):
    s = Served(given_run, "--max-sessions", "2", "--idle-seconds", "30")
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


def player_x(frame: np.ndarray) -> float | None:
    """The white player square's column in an (H, W, 3) frame: where the whiteness (the darkest
    channel) summed over 5x5 px peaks below the HUD's digits; None when nothing there is near white."""
    hud = frame.shape[0] // 6
    white = np.clip(frame[hud:].min(-1).astype(float) - 150, 0, None)
    if white.max() < 40:
        return None
    k = np.ones(5) / 5
    smooth = np.apply_along_axis(np.convolve, 0, np.apply_along_axis(np.convolve, 1, white, k, "same"), k, "same")
    return float(np.unravel_index(smooth.argmax(), smooth.shape)[1])


def test_bad_requests_get_one_line_4xx_and_the_server_stays_up(given_server):
    s = given_server
    video = s.get("/api/info")["videos"][0]["id"]
    status, data, _ = s.request("POST", "/api/sessions", {"video": video, "start": 8})
    assert status == 200, data
    sid = json.loads(data)["id"]
    cases = [
        ("GET", "/api/videos/nope/starts", None, 404, "unknown video 'nope'"),
        ("GET", "/api/videos/..%2F..%2Fsplits.json/starts", None, 404, "unknown video"),
        ("GET", "/../../etc/passwd", None, 404, ""),
        ("POST", "/api/sessions", {"video": "nope", "start": 8}, 404, "unknown video"),
        ("POST", "/api/sessions", {"video": video, "start": 10**6}, 400, f"start 1000000 of {video}"),
        ("POST", "/api/sessions", {"video": video, "start": "8"}, 400, "give an integer frame"),
        ("POST", f"/api/sessions/{sid}/step", "{not json", 400, "the body is not JSON"),
        ("POST", f"/api/sessions/{sid}/step", {"action": 99}, 400, "action 99: give an id from 0 to 4"),
        ("POST", f"/api/sessions/{sid}/step", {"action": [1]}, 400, "give an integer id"),
        ("POST", f"/api/sessions/{sid}/step", {}, 400, "missing action"),
        ("POST", f"/api/sessions/{sid}/step", "x" * 5000, 400, "over 4096 bytes"),
        ("GET", f"/api/sessions/{sid}/step", None, 405, ""),
        ("POST", "/api/sessions/nosuch/step", {"action": 1}, 404, "no session 'nosuch'"),
        ("POST", f"/api/sessions/{sid}/record", {"on": "yes"}, 400, "send true to start"),
        ("POST", f"/api/sessions/{sid}/record", {"on": False}, 400, "not recording"),
    ]
    for method, path, body, want, text in cases:
        status, data, _ = s.request(method, path, body)
        assert status == want, (method, path, status, data)
        assert text in data.decode() and len(data.decode().strip().splitlines()) <= 1, (path, data)
    status, frame, head = s.request("POST", f"/api/sessions/{sid}/step", {"action": 4})  # still serving
    assert status == 200 and len(frame) == 64 * 64 * 3 and head["X-Action-Name"] == "right" and head["X-Frame"] == "1"
    s.request("POST", f"/api/sessions/{sid}/close")


def test_sessions_are_capped_and_a_closed_one_is_freed(given_server):
    s = given_server
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


def test_the_keys_move_the_player_pause_stops_and_a_recording_replays(given_server, browser, tmp_path):
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

    d.find_element("id", "pause").click()  # pause: no more frames
    time.sleep(0.3)
    paused = (shown(d), d.execute_script("return window.playStats.frames"))
    time.sleep(1.0)
    assert (shown(d), d.execute_script("return window.playStats.frames")) == paused
    d.find_element("id", "step").click()
    wait_for(lambda: shown(d) == paused[0] + 1, what="one frame")

    d.find_element("id", "pause").click()
    d.find_element("id", "record").click()
    hold(d, Keys.ARROW_DOWN, 5)
    d.find_element("id", "record").click()
    wait_for(lambda: "saved" in d.find_element("id", "saved").text, what="the saved recording")
    replay_json = next(w for w in d.find_element("id", "saved").text.split() if w.endswith(".json"))
    gif = replay_json[: -len(".json")] + ".gif"
    p = subprocess.run([sys.executable, str(ROOT / "workflow_scripts/steer.py"), "--replay", replay_json, "--out",
                        str(tmp_path / "replay.gif"), "--threads", "1"], capture_output=True, text=True, env=ENV)
    assert p.returncode == 0 and "the same pixels as the recording" in p.stderr + p.stdout, p.stderr[-2000:]
    assert (tmp_path / "replay.gif").read_bytes() == open(gif, "rb").read()

    before = s.get("/api/info")["sessions"]
    d.get("about:blank")  # the tab leaves: its session is freed
    wait_for(lambda: s.get("/api/info")["sessions"] == before - 1, timeout=10, what="the session to close")
