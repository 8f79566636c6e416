"""Serve the play page for a finished pipeline run.

    python -m latentwm.play --results results [--port 8765] [--host 127.0.0.1]

Open the address it prints, pick a test video and a start frame, and steer with the keys the page
lists. Recordings (GIF + the JSON that workflow_scripts/steer.py --replay plays again) go to
RESULTS/play/ unless --recordings says otherwise.
"""

import argparse

from latentwm.core.errors import PipelineError, one_line_errors
from latentwm.core.logs import logger, set_threads

p = argparse.ArgumentParser(prog="python -m latentwm.play", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("--results", default="results", help="the pipeline's results folder")
p.add_argument("--host", default="127.0.0.1", help="the interface to listen on (default: this machine only)")
p.add_argument("--port", type=int, default=8765)
p.add_argument("--recordings", help="where recordings go (default: RESULTS/play)")
p.add_argument("--threads", type=int, default=2), p.add_argument("--seed", type=int, default=0)
p.add_argument("--context", type=int, help="real frames before the start (default: the evaluation's)")
p.add_argument("--temperature", type=float, help="as steer.py's (default: the evaluation's first sampler)")
p.add_argument("--guidance", type=float, help="as steer.py's")
p.add_argument("--fps", type=float, help="frames per second to aim at (default: the videos' own)")
p.add_argument("--max-sessions", type=int, default=4, help="tabs served at once; more are refused")
p.add_argument("--idle-seconds", type=float, default=120.0, help="a session unused this long is freed")

a = p.parse_args()
with one_line_errors():
    for name, value, least in (("--port", a.port, 1), ("--threads", a.threads, 1), ("--max-sessions", a.max_sessions, 1)):
        if value < least or (name == "--port" and value > 65535):
            raise PipelineError(f"{name} {value}: out of range")
    if a.context is not None and a.context < 1:
        raise PipelineError(f"--context {a.context}: give 1 or more")
    if not a.idle_seconds > 0:
        raise PipelineError(f"--idle-seconds {a.idle_seconds}: give a time above 0")
    if a.fps is not None and not 0 < a.fps <= 120:
        raise PipelineError(f"--fps {a.fps}: give a rate above 0 and at most 120")
    set_threads(a.threads)
    from latentwm.play.game import Game  # after the threads are set: torch reads them once
    from latentwm.play.server import serve

    game = Game(a.results, a.recordings, a.context, a.seed, temperature=a.temperature, guidance=a.guidance)
    serve(game, a.host, a.port, log=logger(), max_sessions=a.max_sessions, idle_s=a.idle_seconds, fps=a.fps)
