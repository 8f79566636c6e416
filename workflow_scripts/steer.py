"""Steer an action-conditioned dynamics model by hand: context + action sequence -> GIF.

    python workflow_scripts/steer.py --dynamics results/dynamics/dynamics.pt \
        --tokenizer results/tokenizer/tokenizer.pt --video arena_003 --start 20 --context 8 \
        --actions 1,1,1,1,4,4,4,4 --out steer.gif [--sweep sweep.png]

    python workflow_scripts/steer.py --replay results/play/REC.json --out replay.gif

--replay plays a recording of the play page (python -m latentwm.play) again: its start, seed, sampler
and actions, the model and tokenizer it names (or --dynamics / --tokenizer); it says whether the
frames are the recording's, pixel for pixel.

--video names the stores results/latents/SHARD/VIDEO.zarr and results/frames/VIDEO.zarr (and, for
the context frames' own actions, results/actions/KIND/[SHARD/]VIDEO.zarr of the model's kind, when present).
"""

import argparse
from pathlib import Path

import numpy as np

from latentwm.data.store import open_store, video_store
from latentwm.evaluation.steer import action_store, arguments, context_of, load, replay, steer, sweep
from latentwm.models import checkpoint
from latentwm.models.sampler import own_sampler, trained_tau_ctx
from latentwm.pipeline.job import Job


def main(job: Job) -> None:
    a = job.params
    actions = arguments(a)
    if a.replay is not None:
        if not replay(a.replay, a.out, a.results, a.dynamics, a.tokenizer, log=job.log):
            raise SystemExit(3)
        return
    r = Path(a.results or "results")
    own = action_store(r, checkpoint.load(a.dynamics), a.video)
    lat, fr = video_store(r / "latents", a.video), r / "frames" / f"{a.video}.zarr"
    steer(a.dynamics, a.tokenizer, lat, fr, a.start, a.context, actions, a.out, own, temperature=a.temperature,
          seed=a.seed, log=job.log, guidance=a.guidance)
    if a.sweep:
        model, codec, ckpt = load(a.dynamics, a.tokenizer)
        ctx, ctx_actions = context_of(ckpt, lat, a.start, a.context, own)
        truth = np.asarray(open_store(fr)[a.start : a.start + a.context + len(actions)])
        sampler = own_sampler(model, temperature=a.temperature, guidance=a.guidance)
        sweep(model, codec, ctx, ctx_actions, truth, len(actions), a.sweep, sampler, seed=a.seed,
              tau_ctx=trained_tau_ctx(ckpt))


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dynamics"), p.add_argument("--tokenizer")
    p.add_argument("--video"), p.add_argument("--results", help="the results folder (default: results, or the recording's)")
    p.add_argument("--start", type=int, default=0), p.add_argument("--context", type=int, default=8)
    p.add_argument("--actions", help="comma-separated action ids, one per frame to imagine")
    p.add_argument("--replay", help="a play recording's JSON: replay it (the other inputs come from it)")
    p.add_argument("--out", required=True, help="the GIF"), p.add_argument("--sweep", help="also the action sweep PNG")
    p.add_argument("--threads", type=int, default=2), p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float,
                   help="share of the trained start noise (default: the first sampler's of the built-in evaluation defaults)")
    p.add_argument("--guidance", type=float,
                   help="action guidance, 1: none; above 1 the actions count more (default: as --temperature)")

    a = p.parse_args()
    Job.by_hand(__file__, {}, {}, vars(a), a.threads).run(main)
