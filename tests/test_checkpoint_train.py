"""The shared loop and checkpoint module: resume after a kill is bit-identical to a straight run."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from latentwm.config.fields import to_dict
from latentwm.config.tokenizer import TokenizerConfig
from latentwm.config.train import TrainConfig
from latentwm.core.errors import PipelineError
from latentwm.data.store import StoreWriter
from latentwm.data.windows import FrameBatches
from latentwm.models import checkpoint
from latentwm.models.tokenizer import Tokenizer
from latentwm.training.loop import WithLoss, train

MODEL = TokenizerConfig(base_channels=4, max_mult=2, downsample=2, latent_channels=2, groups=2, mask_ratio=0.3, mask_patch=4)
CFG = TrainConfig(steps=6, lr=3e-3, warmup=2, batch_size=4, log_every=3, checkpoint_every=3, seed=0)


class Killed(Exception):
    pass


@pytest.fixture
def batches(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (24, 3, 8, 8), dtype=np.uint8)
    with StoreWriter(tmp_path / "f.zarr", (3, 8, 8), "uint8", 8, {"source": "t"}) as w:
        w.append(data)
        w.commit()
    return FrameBatches([tmp_path / "f.zarr"], CFG.batch_size, seed=0)


def run(tmp_path, batches, objective=lambda m, b: m(b), fingerprint="f", cfg=CFG, probe=None, keep_best=False):
    torch.manual_seed(0)  # the caller seeds the initial weights
    model = Tokenizer(MODEL)
    return train(
        WithLoss(model, objective), batches, cfg, name="tokenizer", model_config=to_dict(MODEL),
        resume_path=tmp_path / "resume.pt", curve_path=tmp_path / "curve.csv", fingerprint=fingerprint,
        log=lambda m: None, probe=probe, health_path=tmp_path / "health.json", held_out="held_out", keep_best=keep_best,
    )  # fmt: skip


def killed_after(k):
    """An objective that dies (like a killed job) when asked for batch k + 1, i.e. after k steps."""
    calls = {"n": 0}

    def objective(m, b):
        calls["n"] += 1
        if calls["n"] > k:
            raise Killed
        return m(b)

    return objective


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_after_a_kill_matches_a_straight_run(tmp_path, batches, workers):
    # mask_ratio > 0: the objective draws from torch's RNG, so the RNG state must resume too
    cfg = dataclasses.replace(CFG, workers=workers)
    straight = run(tmp_path / "a", batches, cfg=cfg)
    with pytest.raises(Killed):
        run(tmp_path / "b", batches, objective=killed_after(4), cfg=cfg)  # resume.pt was written at step 3
    assert checkpoint.load(tmp_path / "b" / "resume.pt")["step"] == 3
    resumed = run(tmp_path / "b", batches, cfg=cfg)
    assert resumed["step"] == straight["step"] == 6
    for k, v in straight["model"].items():
        assert torch.equal(v, resumed["model"][k]), k
    assert [r["loss"] for r in resumed["rows"]] == [r["loss"] for r in straight["rows"]]


def test_a_resume_file_of_another_config_is_ignored(tmp_path, batches):
    with pytest.raises(Killed):
        run(tmp_path, batches, objective=killed_after(4))
    fresh = run(tmp_path, batches, fingerprint="changed")
    straight = run(tmp_path / "s", batches)
    assert all(torch.equal(v, straight["model"][k]) for k, v in fresh["model"].items())


def test_final_checkpoint_loads_weights_only_and_rebuilds_the_model(tmp_path, batches):
    final = run(tmp_path, batches)
    checkpoint.save(tmp_path / "tok.pt", final)
    state = torch.load(tmp_path / "tok.pt", weights_only=True)
    model = checkpoint.build_model(tmp_path / "tok.pt", kind="tokenizer")
    assert not model.training and state["kind"] == "tokenizer"
    x = torch.rand(2, 3, 8, 8)
    ref = Tokenizer(MODEL)
    ref.load_state_dict(final["model"])
    ref.eval()
    assert torch.equal(model.encode(x), ref.encode(x))
    with pytest.raises(PipelineError, match="expected 'dynamics'"):
        checkpoint.build_model(tmp_path / "tok.pt", kind="dynamics")


def test_nan_loss_stops_with_a_pipeline_error(tmp_path, batches):
    def nan_objective(m, b):
        loss, logs = m(b)
        return loss * float("nan"), logs

    with pytest.raises(PipelineError, match="step 0: loss is nan"):
        run(tmp_path, batches, objective=nan_objective)


class Selecting:
    """A probe with a held-out loss given per log step; it keeps the weights it saw."""

    def __init__(self, values: dict[int, float], every: int = CFG.log_every, offset: int = 0):
        self.values, self.seen, self.calls, self.every, self.offset = values, {}, 0, every, offset

    def __call__(self, network):
        self.calls += 1
        step = self.calls * self.every + self.offset
        self.seen[step] = {k: v.clone() for k, v in network.state_dict().items()}
        return {"collapsed": False, "held_out": self.values[step]}


def test_the_weights_of_the_lowest_held_out_loss_are_returned(tmp_path, batches):
    cfg = dataclasses.replace(CFG, steps=9, checkpoint_every=3)
    probe = Selecting({3: 2.0, 6: 0.5, 9: 1.0})  # best at step 6, not the last step 9
    final = run(tmp_path / "a", batches, cfg=cfg, probe=probe, keep_best=True)
    assert final["step"] == 9
    assert all(torch.equal(final["model"][k], v) for k, v in probe.seen[6].items())
    assert not all(torch.equal(final["model"][k], v) for k, v in probe.seen[9].items())
    health = json.loads((tmp_path / "a" / "health.json").read_text())
    assert health["selected"] == {"step": 6, "select": 0.5, "last_step": 9, "last_select": 1.0}
    # killed after the best step, the resumed run still returns the best weights
    with pytest.raises(Killed):
        run(tmp_path / "b", batches, objective=killed_after(7), cfg=cfg, probe=Selecting({3: 2.0, 6: 0.5, 9: 1.0}), keep_best=True)
    late = Selecting({3: 2.0, 6: 0.5, 9: 1.0}, offset=6)  # the resumed run probes at step 9 only
    resumed = run(tmp_path / "b", batches, cfg=cfg, probe=late, keep_best=True)
    assert all(torch.equal(resumed["model"][k], v) for k, v in final["model"].items())
    # without keep_best the last weights are kept
    plain = run(tmp_path / "c", batches, cfg=cfg, probe=Selecting({3: 2.0, 6: 0.5, 9: 1.0}))
    assert all(torch.equal(plain["model"][k], v) for k, v in probe.seen[9].items())


def test_bf16_autocast_runs_where_the_hardware_has_it_and_nowhere_else(tmp_path, batches):
    """train.bf16 on a CPU: bfloat16 convolutions where latentwm.core.device.native_bf16 says the CPU runs them
    (the losses move off the fp32 run's), bit-identical to fp32 where it does not."""
    from latentwm.core.device import native_bf16

    seen = []

    def objective(m, b):
        loss, logs = m(b)
        seen.append(torch.is_autocast_enabled("cpu"))
        return loss, logs

    on = run(tmp_path / "on", batches, objective, cfg=dataclasses.replace(CFG, bf16=True))
    off = run(tmp_path / "off", batches, cfg=dataclasses.replace(CFG, bf16=False))
    native = native_bf16(torch.device("cpu"))
    assert seen == [native] * CFG.steps
    same = all(torch.equal(a, b) for a, b in zip(on["model"].values(), off["model"].values()))
    assert same != native


def test_fp32_runs_train_fp32_steps_and_never_resume_a_bf16_run():
    from latentwm.training.loop import for_precision

    cfg = TrainConfig(steps=10, fp32_steps=4, bf16=False)
    run_cfg, precision, fp = for_precision(cfg, torch.device("cpu"), "abc")
    assert (run_cfg.steps, precision, fp) == (4, "fp32", "abc:fp32")
    assert for_precision(TrainConfig(steps=10, bf16=False), torch.device("cpu"), "abc")[0].steps == 10  # 0: steps


# held-out loss falling to step 10, then far above its low: the plateau watch (a mean of 8) anneals at 15
PLATEAU = TrainConfig(steps=30, lr=3e-3, warmup=2, batch_size=4, log_every=1, checkpoint_every=3, seed=0, min_lr_ratio=0.1,
                      plateau_steps=5, anneal_fraction=0.4)
FALLS_THEN_STALLS = {s: 2 - s / 10 if s <= 10 else 10.0 for s in range(1, 31)}


def test_a_held_out_plateau_anneals_from_where_it_is_and_ends_the_run(tmp_path, batches):
    final = run(tmp_path / "a", batches, cfg=PLATEAU, probe=Selecting(FALLS_THEN_STALLS, every=1))
    assert final["step"] == 15 + 6  # anneal_fraction 0.4 of the 15 steps run when it began
    health = json.loads((tmp_path / "a" / "health.json").read_text())
    assert health["annealed_at"] == 15 and health["steps"] == 21
    lr = {int(r["step"]): r["lr"] for r in final["rows"]}
    assert sorted(lr) == list(range(1, 22))  # a row per step, the last at the end
    assert all(lr[s] > lr[s + 1] for s in range(15, 21))  # down from where it was ...
    assert lr[21] == pytest.approx(PLATEAU.lr * PLATEAU.min_lr_ratio)  # ... to the floor at the end
    cosine = run(tmp_path / "c", batches, cfg=dataclasses.replace(PLATEAU, plateau_steps=0),
                 probe=Selecting(FALLS_THEN_STALLS, every=1))
    assert cosine["step"] == 30 and [r["lr"] for r in cosine["rows"][:15]] == [lr[s] for s in range(1, 16)]
    # killed inside the anneal, the resumed run anneals and ends exactly as the straight one
    with pytest.raises(Killed):
        run(tmp_path / "b", batches, objective=killed_after(19), cfg=PLATEAU, probe=Selecting(FALLS_THEN_STALLS, every=1))
    assert checkpoint.load(tmp_path / "b" / "resume.pt")["step"] == 18
    resumed = run(tmp_path / "b", batches, cfg=PLATEAU, probe=Selecting(FALLS_THEN_STALLS, every=1, offset=18))
    assert resumed["step"] == 21
    assert all(torch.equal(v, resumed["model"][k]) for k, v in final["model"].items())


def test_the_budget_follows_the_held_out_loss_not_the_steps_asked_for():
    """The same held-out curve under a 4x budget anneals at the same step; without a held-out loss
    (or with plateau_steps 0) the schedule is the plain cosine over all steps."""
    from latentwm.training.schedule import Schedule

    ends = []
    for steps in (600, 2400):
        plan = Schedule(dataclasses.replace(PLATEAU, steps=steps, plateau_steps=100, log_every=10))
        curve = [(s, max(1.0, 3 - s / 100) + 0.05 * (-1) ** (s // 10)) for s in range(10, steps + 1, 10)]  # noisy floor at 200
        started = [s for s, v in curve if plan.offer(v, s)]
        assert plan(plan.anneal_at) == pytest.approx(plan.cosine(plan.anneal_at))  # no jump where it begins
        assert plan(plan.end) == pytest.approx(PLATEAU.min_lr_ratio)
        ends.append((started, plan.end))
    assert ends[0] == ends[1] and ends[0][0][0] < 600
    silent = Schedule(dataclasses.replace(PLATEAU, steps=600, plateau_steps=0))
    assert not any(silent.offer(3.0, s) for s in range(10, 601, 10)) and silent.end == 600
