"""The latent action model on tiny shapes: it finds a planted action, resets dead codes, refuses a
collapsed codebook, and encode_actions writes aligned stores whose provenance readers check."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from latentwm.config.fields import from_dict
from latentwm.config.lam import LamConfig, LamStage
from latentwm.core import files
from latentwm.core.errors import PipelineError
from latentwm.data.actions import NO_ACTION, nmi, read_store
from latentwm.data.store import StoreWriter, open_store
from latentwm.models import checkpoint
from latentwm.models.lam import Lam
from latentwm.training.encode import encode_actions
from latentwm.training.fit_lam import fit

MOVES = [(0, 0), (0, -1), (0, 1), (-1, 0), (1, 0)]  # (dy, dx) of actions 0..4, in cells of 2x2 pixels


def planted(n: int, T: int, seed: int = 0):
    """Frames (n, T, 3, 16, 16) of pixel values: a white 2x2 block moved one cell of 2 pixels by random
    actions (wrapping) over a dim noisy floor, and the actions (n, T) (frame 0: NO_ACTION)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(40, 80, (n, T, 3, 16, 16)).astype(np.float32)
    acts = rng.integers(0, len(MOVES), (n, T))
    acts[:, 0] = NO_ACTION
    for i in range(n):
        cy, cx = rng.integers(0, 8, 2)
        for t in range(T):
            if t:
                dy, dx = MOVES[acts[i, t]]
                cy, cx = (cy + dy) % 8, (cx + dx) % 8
            x[i, t, :, 2 * cy : 2 * cy + 2, 2 * cx : 2 * cx + 2] = 250
    return torch.from_numpy(x), acts


def test_lam_finds_a_planted_action():
    torch.manual_seed(0)
    z, acts = planted(512, 2)  # transitions t -> t+1: the default context of 1 frame
    model = Lam(LamConfig(codes=8, code_dim=8, width=16, depth=1, patch=2), null_action=0.1, dead_code_every=20)
    model.scale_to(z)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for step in range(300):
        idx = torch.randint(0, len(z), (64,))
        loss, logs = model(z[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    _, logs = model(z)
    ids = model.infer(z[:, 0], z[:, 1]).numpy()
    assert float(logs["perplexity"]) >= 4, "at least half of the 8 codes in use"
    assert float(logs["action_gain"]) > 0, "the forward model predicts better with the action than without"
    assert nmi(ids, acts[:, 1]) > 0.6


def test_dead_codes_are_moved_onto_encoder_outputs():
    torch.manual_seed(0)
    model = Lam(LamConfig(codes=4, code_dim=4, width=8, depth=1, patch=2), dead_code_every=50)
    z, _ = planted(32, 2)
    with torch.no_grad():  # every encoder output nearest code 0: codes 1-3 are dead
        e = model.embed(*model.cells(z).unbind(1))
        model.codebook.data[:] = -e.mean(0)
        model.codebook.data[0] = e.mean(0)
    before = model.codebook.detach().clone()
    model.train()
    for _ in range(50):  # the usage of codes 1-3 decays below 1/(10 K) before the reset at step 50
        model(z)
    moved = (model.codebook.detach() != before).any(1)
    assert moved[1:].all() and not moved[0], "the three dead codes moved, the live one did not"


def _stores(tmp_path, n_videos=3, T=20):
    x, acts = planted(n_videos, T, seed=1)
    paths = []
    for i in range(n_videos):
        p = tmp_path / f"v{i}.zarr"
        with StoreWriter(p, (3, 16, 16), "uint8", 8, {"height": 16, "width": 16, "frames": T}) as w:
            w.append(x[i].numpy().astype(np.uint8))
            w.commit()
        paths.append(str(p))
    return paths, acts


def _stage(**kw):
    return from_dict(LamStage, {"model": {"codes": 4, "code_dim": 4, "width": 8, "depth": 1, "patch": 2},
                                "train": {"steps": 12, "batch_size": 8, "log_every": 4, "checkpoint_every": 6, "warmup": 2},
                                "val_windows": 8, **kw}, "lam")


def test_fit_then_encode_actions_aligned_with_provenance(tmp_path):
    paths, _ = _stores(tmp_path)
    out = SimpleNamespace(checkpoint=tmp_path / "lam.pt", curve=tmp_path / "curve.csv", metrics=tmp_path / "metrics.json")
    fit(_stage(min_perplexity=1.0), SimpleNamespace(frames=paths[:2], val=paths[2:]), out,
        tmp_path / "resume.pt", lambda m: None)
    metrics = json.loads(out.metrics.read_text())
    assert {"val_perplexity", "val_usage", "val_fwd_loss", "val_fwd_loss_without", "codes"} <= set(metrics)
    assert not (tmp_path / "resume.pt").exists()
    ckpt = checkpoint.load(out.checkpoint)
    model = checkpoint.build_model(ckpt, kind="lam")
    lam_hash = files.file_hash(out.checkpoint)
    encode_actions(model, ckpt, paths[0], tmp_path / "a.zarr", lam_hash, batch_size=7, log=lambda m: None)
    ids = read_store(tmp_path / "a.zarr", {"lam_hash": lam_hash}, frames=20)
    assert ids[0] == NO_ACTION and ((ids[1:] >= 0) & (ids[1:] < 4)).all()
    x = torch.from_numpy(np.asarray(open_store(paths[0])[:]))
    assert np.array_equal(ids[1:], model.infer(x[:-1], x[1:]).numpy()), "ids[t] is the code of frame t-1 -> t"
    with pytest.raises(PipelineError, match=r"^store .*a.zarr: lam_hash is '.*' but 'other' was expected; rerun"):
        read_store(tmp_path / "a.zarr", {"lam_hash": "other"})
    with pytest.raises(PipelineError, match=r"has 20 frames but its latents have 21"):
        read_store(tmp_path / "a.zarr", frames=21)


def test_collapsed_codebook_fails_with_one_line_and_no_checkpoint(tmp_path):
    paths, _ = _stores(tmp_path)
    out = SimpleNamespace(checkpoint=tmp_path / "lam.pt", curve=tmp_path / "curve.csv", metrics=tmp_path / "metrics.json")
    with pytest.raises(PipelineError, match=r"^latent action model collapsed: its 4 codes have perplexity .* on the val"):
        fit(_stage(min_perplexity=4.0), SimpleNamespace(frames=paths[:2], val=paths[2:]), out,
            tmp_path / "resume.pt", lambda m: None)
    assert not out.checkpoint.exists() and not out.curve.exists()


def test_continuous_warmup_then_codes_start_on_encoder_outputs():
    torch.manual_seed(0)
    model = Lam(LamConfig(codes=4, code_dim=4, width=8, depth=1, patch=2), continuous_steps=3).train()
    z, _ = planted(16, 2)
    for _ in range(3):
        _, logs = model(z)
        assert float(logs["vq_loss"]) == 0.0, "no codebook during the warmup"
    _, logs = model(z)  # step 3: the codes start on 4 of this batch's encoder outputs
    e = model.embed(*model.cells(z).unbind(1)).detach()
    sims = model.codebook.detach() @ e.t()  # (4, 16): each code is one of the outputs (unit vectors)
    assert torch.allclose(sims.max(1).values, torch.ones(4), atol=1e-5)


def test_a_context_of_two_frames_trains_on_windows_of_three(tmp_path):
    paths, _ = _stores(tmp_path)
    out = SimpleNamespace(checkpoint=tmp_path / "lam.pt", curve=tmp_path / "curve.csv", metrics=tmp_path / "metrics.json")
    fit(_stage(min_perplexity=1.0, model={"codes": 4, "code_dim": 4, "width": 8, "depth": 1, "patch": 2, "context": 2}),
        SimpleNamespace(frames=paths[:2], val=paths[2:]), out, tmp_path / "resume.pt", lambda m: None)
    model = checkpoint.build_model(checkpoint.load(out.checkpoint), kind="lam")
    assert model.fwd_in.in_channels == 2 * 12 + 4, "two past frames of 3 x 2 x 2 channels and the code"
    z, _ = planted(4, 3)
    loss, logs = model(z)  # (B, 3, C, h, w): frames t-1, t, t+1
    assert torch.isfinite(loss)
    with pytest.raises(RuntimeError):
        model(z[:, 1:])  # a window of 2 frames gives one past frame, not the two it was built for


def panned(n: int, seed: int = 0):
    """Transitions (n, 2, 3, 16, 16): a random texture (smooth over 2x2 blocks) moved by one of MOVES'
    whole-view pans of 1-2 cells of 2 pixels (wrapping, a camera turning), under a still HUD strip
    (the bottom 4 rows, the same in both frames) and a flash of light on half the transitions; and
    the move index of each (n,)."""
    rng = np.random.default_rng(seed)
    base = torch.from_numpy(rng.integers(0, 256, (n, 3, 8, 8)).astype(np.float32)).repeat_interleave(2, 2).repeat_interleave(2, 3)
    acts = rng.integers(0, len(MOVES), n)
    steps = rng.integers(1, 3, n)
    nxt = torch.stack([torch.roll(b, (2 * int(k) * MOVES[a][0], 2 * int(k) * MOVES[a][1]), (1, 2)) for b, a, k in zip(base, acts, steps)])
    nxt = (nxt * torch.from_numpy(np.where(rng.random(n) < 0.5, 0.6, 1.0).astype(np.float32))[:, None, None, None])
    x = torch.stack([base, nxt], 1)
    x[..., 12:, :] = 128.0
    return x, acts


def test_shifted_and_match_agree_on_a_pan():
    from latentwm.models.lam import match, shifted

    z = torch.rand(2, 3, 8, 8)
    target = torch.roll(z, (1, -2), (2, 3))  # down 1, left 2
    w = torch.zeros(2, 2, 7)
    w[:, 0, 3 - 2], w[:, 1, 3 + 1] = 1, 1
    inner = (slice(None), slice(None), slice(1, 8), slice(0, 6))  # away from the repeated edges
    assert torch.equal(shifted(z, w, 3)[inner], target[inner])
    cost = match(z, target, 3)
    assert [divmod(int(i), 7) for i in cost.flatten(1).argmin(1)] == [(3 + 1, 3 - 2)] * 2, "lowest at (dy, dx) = (1, -2)"


def _pan_codes(inverse: str, shift: int):
    """NMI of a LAM's codes on held-out panned transitions with the pan and with the flash of light."""
    torch.manual_seed(0)
    x, _ = panned(512)
    model = Lam(LamConfig(codes=8, code_dim=8, width=16, depth=1, patch=2, shift=shift, inverse=inverse), dead_code_every=20)
    model.scale_to(x)
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    for _ in range(200):
        loss, _ = model(x[torch.randint(0, len(x), (64,))])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test, acts = panned(256, seed=1)
    ids = model.infer(test[:, 0], test[:, 1]).numpy()
    flash = (test[:, 1, :, :12].mean((1, 2, 3)) < 0.8 * test[:, 0, :, :12].mean((1, 2, 3))).numpy()
    return nmi(ids, acts), nmi(ids, flash.astype(np.int64))


def test_a_lam_that_reads_motion_names_the_pan_where_one_that_reads_frames_names_the_light():
    pan, light = _pan_codes("motion", shift=2)
    assert pan > 0.5 and pan > light + 0.3, f"motion: codes follow the pan (NMI {pan:.2f}), not the light ({light:.2f})"
    pan, light = _pan_codes("frames", shift=0)  # the light changes more pixels than the pan: the objective's pick
    assert light > pan, f"frames: codes follow the light (NMI {light:.2f}) more than the pan ({pan:.2f})"
