"""The play server's speed and memory on a finished run's results.

    python bench/bench_play.py --results results [--frames 300] [--long 3000] [--threads 2]

Three measures, one table each:
- the model step alone (latentwm.play.game.Session.step: sampler + decode), per frame;
- over HTTP (the server in its own process, one keep-alive connection, one request per frame, as
  the page asks): per-frame latency median / 95th percentile and frames per second;
- in headless Chromium (when installed): the rate the page itself reaches and the time from a key
  press to the first frame drawn under that key, from its own counters (window.playStats);
and the server's resident memory as one session plays `--long` frames (it must stay flat).
With --steering (the generator's given actions: noop, up, down, left, right), where each action held
for 4 frames moves the white player square, from every start frame whose player is 12 px or more
from the walls (the game moves it 2.5 px a frame at 64 px).
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def stats(ms: list[float]) -> str:
    return f"{np.median(ms):.1f} | {np.percentile(ms, 95):.1f} | {1000 / np.mean(ms):.1f}"


def model_alone(results: str, frames: int, action: int) -> list[float]:
    from latentwm.play.game import Game, Session

    g = Game(results)
    s = Session(g, next(iter(g.videos)), g.context)
    out = []
    for i in range(frames + 5):
        t = time.perf_counter()
        s.step(action if g.n_actions else -1)
        if i >= 5:  # after warm-up
            out.append(1000 * (time.perf_counter() - t))
    return out


def steering(results: str, frames: int = 4) -> str:
    from test_play import player_xy

    from latentwm.play.game import Game, Session

    g = Game(results)
    moved = {a: [] for a in range(g.n_actions)}
    starts = 0
    for vid in g.videos:
        for start in g.starts(vid):
            p0 = player_xy(g.thumbnail(vid, start))
            if p0 is None or not (12 <= p0[0] <= 52 and 22 <= p0[1] <= 52):
                continue
            starts += 1
            for a in moved:
                s = Session(g, vid, start)
                for _ in range(frames):
                    frame = s.step(a)
                p = player_xy(frame)
                moved[a].append(None if p is None else (p[0] - p0[0], p[1] - p0[1]))
    lines = [f"{starts} start frames, each action held {frames} frames:\n",
             "| action | player found | dx median px | dy median px |", "|---|---:|---:|---:|"]
    for a, d in moved.items():
        found = np.array([m for m in d if m is not None]).reshape(-1, 2)
        lines.append(f"| {g.names[a]} | {len(found)}/{starts} | {np.median(found[:, 0]):+.1f} | {np.median(found[:, 1]):+.1f} |")
    return "\n".join(lines)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def over_http(port: int, frames: int, long: int, pid: int) -> tuple[list[float], list[tuple[int, float]]]:
    c = http.client.HTTPConnection("127.0.0.1", port)
    c.request("GET", "/api/info")
    info = json.loads(c.getresponse().read())
    c.request("POST", "/api/sessions", json.dumps({"video": info["videos"][0]["id"], "start": info["context"]}))
    sid = json.loads(c.getresponse().read())["id"]
    action = json.dumps({"action": (len(info["actions"]) - 1) if info["actions"] else -1})
    times, memory = [], [(0, rss_mb(pid))]
    for i in range(max(frames, long) + 5):
        t = time.perf_counter()
        c.request("POST", f"/api/sessions/{sid}/step", action)
        r = c.getresponse()
        r.read()
        assert r.status == 200, r.status
        if 5 <= i < frames + 5:
            times.append(1000 * (time.perf_counter() - t))
        if (i + 1) % 500 == 0:
            memory.append((i + 1, rss_mb(pid)))
    c.request("POST", f"/api/sessions/{sid}/close")
    c.getresponse().read()
    return times, memory


def in_browser(port: int, seconds: float) -> dict | None:
    from browser import chrome, why_not

    if why_not():
        return None
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    d = chrome()
    try:
        d.get(f"http://127.0.0.1:{port}/")
        time.sleep(3)
        end = time.time() + seconds
        keys = [Keys.ARROW_RIGHT, Keys.ARROW_LEFT]
        while time.time() < end:  # press, hold 0.4 s, release, 0.3 s between presses
            key = keys[int(time.time()) % 2]
            ActionChains(d).key_down(key).perform()
            time.sleep(0.4)
            ActionChains(d).key_up(key).perform()
            time.sleep(0.3)
        return d.execute_script("return {fps: Number(document.getElementById('fps').textContent), "
                                "lags: window.playStats.lags, frames: window.playStats.frames}")
    finally:
        d.quit()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", default="results"), p.add_argument("--frames", type=int, default=300)
    p.add_argument("--long", type=int, default=3000), p.add_argument("--threads", type=int, default=2)
    p.add_argument("--browser-seconds", type=float, default=15.0)
    p.add_argument("--steering", action="store_true", help="also where each action moves the generator's player")
    a = p.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    alone = model_alone(a.results, a.frames, 1)
    from test_play import Served  # the tests' way of starting the server and waiting for it

    server = Served(a.results, "--threads", str(a.threads))
    try:
        http_ms, memory = over_http(server.port, a.frames, a.long, server.proc.pid)
        page = in_browser(server.port, a.browser_seconds)
    finally:
        server.close()
    print(f"results {a.results}, {a.threads} threads, {a.frames} frames\n")
    print("| path | latency median ms | p95 ms | frames/s |\n|---|---:|---:|---:|")
    print(f"| model step (sampler + decode) | {stats(alone)} |")
    print(f"| HTTP request per frame | {stats(http_ms)} |")
    if page:
        lags = page["lags"] or [float("nan")]
        print(f"\nIn Chromium: the page's rate {page['fps']:.1f} frames/s; key press to frame median "
              f"{np.median(lags):.0f} ms, 95th percentile {np.percentile(lags, 95):.0f} ms over {len(page['lags'])} presses")
    else:
        print("\nIn Chromium: not measured (no Chromium here)")
    print("\n| frames played | server RSS MB |\n|---:|---:|")
    for n, mb in memory:
        print(f"| {n} | {mb:.0f} |")
    if a.steering:
        print("\n" + steering(a.results))


if __name__ == "__main__":
    main()
