"""metrics.csv (one row per window, condition, step, metric) -> summary: intervals, paired differences, verdict.

Every condition is paired with the baseline that has seen the same real frames (BASELINES):

    model, model_mean, model_best  -> copy_last   all see only the context
    teacher_forced     -> copy_previous   both have seen the real frame before each target

copy_last_pixels (the real frames, past the tokenizer), the motion oracle and the ceiling are paired
with nothing: they are levels to read the others against.

Per condition, step and metric: the mean over windows with a bootstrap 95% interval; per paired
condition: the mean paired difference (condition minus baseline, paired by window) with its own
bootstrap interval. Resamples are of windows (BOOTSTRAP_RESAMPLES, fixed seed), the same resamples
for every condition, so intervals are comparable. NaN values (a metric undefined on a window: no
still pixels, no true motion, a flat frame) are skipped in means, and `windows_scored` says over how
many windows each metric's means are; a NaN anywhere else never reaches a summary (metrics.score
refuses it).

The verdict: a condition beats its baseline on a ranked metric at steps 1..k for the largest k such
that the interval of the paired difference lies entirely on the better side at every step 1..k; a
difference whose interval contains 0 is never a win. Unranked metrics (sharpness, motion) are read
against their flags (metrics.Metric.flags: blurred, noisy, still). A condition flagged blurred at any
step beats nothing (`verdict.beats_steps` all 0; its sentence says "is blurred" first): a blurred
mean of the possible futures scores PSNR without predicting any of them. A sharp condition flagged
still (under STILL_BELOW of the truth's motion) keeps its wins, and its sentence says "stands still"
first: it is ahead of the copy by being a better copy, not by moving with the scene. model_best picks its
rollout by PSNR against the truth (an oracle choice), and its sentence says so. The paired differences stay in
`vs_baseline`, with what they would have won in `beats_steps` there.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from latentwm.data.actions import nmi, read_store
from latentwm.evaluation import metrics as M

BASELINES = {"model": "copy_last", "model_mean": "copy_last", "model_best": "copy_last", "teacher_forced": "copy_previous",
             "random_actions": "copy_last", "no_action": "copy_last"}
PIXEL_COPY = "copy_last_pixels"  # the one condition not decoded by the tokenizer (latentwm.evaluation.rollouts)
MOTION_ORACLE = "motion_oracle"  # copy_last warped by the true optical flow (latentwm.evaluation.oracle)
ORDER = ("model", "model_mean", "model_best", "teacher_forced", "random_actions", "no_action", "copy_last", PIXEL_COPY,
         "copy_previous", MOTION_ORACLE, "ceiling")  # conditions, as shown
# an action model's rollout (with the window's actions) against the same sampler's rollouts with other
# actions: model minus random_actions is the controllability
ACTION_CONDITIONS = ("random_actions", "no_action")
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
NO_SAMPLER = "none"  # sampler column of the conditions that use none (copy_last and the other baselines)


def label(condition: str, sampler: str = NO_SAMPLER) -> str:
    """Name of a condition in the summary and the plots: 'model:euler64', 'copy_last', ..."""
    return condition if sampler == NO_SAMPLER else f"{condition}:{sampler}"


def read_metrics(path) -> pd.DataFrame:
    """metrics.csv with video ids kept as text (a video may be called 'NA') and empty values as NaN."""
    return pd.read_csv(path, keep_default_na=False, na_values={"value": [""]})


def _nanmean(v: np.ndarray, axis: int) -> np.ndarray:
    ok = ~np.isnan(v)
    s, n = np.where(ok, v, 0.0).sum(axis), ok.sum(axis)
    return np.divide(s, n, out=np.full(s.shape, np.nan), where=n > 0)


def bootstrap(values: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """values (W, H) per window and step; idx (R, W) resampled window indices -> mean, low, high (H,).

    Percentile interval of the mean over windows; NaN where a step has no defined value.
    """
    means = _nanmean(values[idx], 1)  # (R, W, H) -> (R, H)
    a = 100 * (1 - CONFIDENCE) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN steps stay NaN
        lo, hi = np.nanpercentile(means, [a, 100 - a], axis=0)
    return _nanmean(values, 0), lo, hi


def resamples(n_windows: int) -> np.ndarray:
    return np.random.default_rng(BOOTSTRAP_SEED).integers(0, n_windows, (BOOTSTRAP_RESAMPLES, n_windows))


def beats_steps(lo: np.ndarray, hi: np.ndarray, higher_is_better: bool) -> int:
    """Largest k with the whole interval on the better side of 0 at every step 1..k."""
    better = lo > 0 if higher_is_better else hi < 0
    return int(np.argmin(np.append(better, False)))


def worse_steps(lo: np.ndarray, hi: np.ndarray, higher_is_better: bool) -> list[int]:
    """Steps (1-based) where the whole interval lies on the worse side of 0."""
    worse = hi < 0 if higher_is_better else lo > 0
    return [int(i) + 1 for i in np.flatnonzero(worse)]


def _steps(steps: list[int]) -> str:
    """[1, 2, 3, 5] -> '1-3, 5'."""
    runs: list[list[int]] = []
    for s in steps:
        if runs and s == runs[-1][-1] + 1:
            runs[-1].append(s)
        else:
            runs.append([s])
    return ", ".join(f"{r[0]}-{r[-1]}" if len(r) > 1 else str(r[0]) for r in runs)


def flags(per_step: list[float], m: M.Metric) -> dict[str, list[int]]:
    """Flag name -> steps (1-based) where the per-step mean crosses the flag's threshold."""
    v = np.asarray(per_step, dtype=float)
    return {name: [int(i) + 1 for i in np.flatnonzero(v < t if op == "<" else v > t)] for name, op, t in m.flags}


def _matrices(df: pd.DataFrame) -> tuple[list[tuple[str, int]], dict[tuple[str, str, str], np.ndarray]]:
    """(window keys, (condition, sampler, metric) -> values (W, H)), rows in the same window order."""
    keys = sorted(set(zip(df.video, df.window)))
    index = pd.MultiIndex.from_tuples(keys, names=["video", "window"])
    out = {}
    for (c, s, m), g in df.groupby(["condition", "sampler", "metric"], sort=False):
        out[(c, s, m)] = g.pivot(index=["video", "window"], columns="step", values="value").reindex(index).to_numpy(float)
    return keys, out


def paired(mats, a: tuple[str, str], b: tuple[str, str], metric: str, idx) -> dict[str, list[float]]:
    """Condition a minus condition b ((condition, sampler) each) in `metric`, paired by window:
    per-step mean difference with its bootstrap interval."""
    d, lo, hi = bootstrap(mats[(*a, metric)] - mats[(*b, metric)], idx)
    return {"diff": floats(d), "ci_low": floats(lo), "ci_high": floats(hi)}


def summarise(df: pd.DataFrame, fps: dict[str, float]) -> dict[str, Any]:
    """Per condition: per-step means with intervals, paired differences to its baseline, verdict."""
    keys, mats = _matrices(df)
    idx = resamples(len(keys))
    rank = {s: i for i, s in enumerate(fps)}  # the samplers as the evaluation lists them: the model's own first
    pairs = sorted({(c, s) for c, s, _ in mats},
                   key=lambda p: (ORDER.index(p[0]) if p[0] in ORDER else 99, rank.get(p[1], len(rank)), p[1]))
    names = [m.name for m in M.METRICS if any((c, s, m.name) in mats for c, s in pairs)]
    reg = [M.metric(n) for n in names]
    out: dict[str, Any] = {}
    for c, s in pairs:
        e: dict[str, Any] = {"condition": c, "sampler": s, "baseline": BASELINES.get(c), "windows": len(keys),
                             "per_step": {}, "ci_low": {}, "ci_high": {}, "mean": {}, "windows_scored": {}}
        for m in reg:  # windows_scored: those a metric's means are over (undefined ones, e.g. still truth, skipped)
            e["windows_scored"][m.name] = int((~np.isnan(mats[(c, s, m.name)])).any(1).sum())
            mean, lo, hi = bootstrap(mats[(c, s, m.name)], idx)
            e["per_step"][m.name], e["ci_low"][m.name], e["ci_high"][m.name] = floats(mean), floats(lo), floats(hi)
            e["mean"][m.name] = float(_nanmean(mats[(c, s, m.name)].reshape(1, -1), 1)[0])
        if c == "model":  # timed: the autoregressive rollout of this sampler
            e["frames_per_s"] = fps[s]
        out[label(c, s)] = e
    for e in out.values():
        base = e["baseline"]
        if base is None or base not in out:
            found = _flags(e, reg)
            e["verdict"] = {**found, "text": _text(label(e["condition"], e["sampler"]), e, reg, found)}
            continue
        e["vs_baseline"] = {}
        for m in reg:
            row = paired(mats, (e["condition"], e["sampler"]), (base, NO_SAMPLER), m.name, idx)
            lo, hi = np.asarray(row["ci_low"]), np.asarray(row["ci_high"])
            if m.higher_is_better is not None:
                row["beats_steps"] = beats_steps(lo, hi, m.higher_is_better)
                row["worse_steps"] = worse_steps(lo, hi, m.higher_is_better)
            e["vs_baseline"][m.name] = row
        found = _flags(e, reg)
        e["verdict"] = {"baseline": base,
                        "beats_steps": {n: 0 if found.get(M.BLURRED) else r["beats_steps"]
                                        for n, r in e["vs_baseline"].items() if "beats_steps" in r},
                        **found, "text": _text(label(e["condition"], e["sampler"]), e, reg, found)}
        if e["condition"] == "model":
            for other in ACTION_CONDITIONS:
                if (other, e["sampler"], reg[0].name) not in mats:
                    continue
                e.setdefault("vs_actions", {})[other] = {
                    m.name: paired(mats, ("model", e["sampler"]), (other, e["sampler"]), m.name, idx) for m in reg}
        if "psnr" in e["per_step"] and "ceiling" in out:
            e["psnr_gap_to_ceiling_step1"] = out["ceiling"]["per_step"]["psnr"][0] - e["per_step"]["psnr"][0]
    return out


def floats(a) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=float)]


def _flags(e: dict, reg: list[M.Metric]) -> dict[str, Any]:
    found = {}
    for m in reg:
        for name, steps in flags(e["per_step"][m.name], m).items():
            found[name] = bool(steps)
            found[f"{name}_steps"] = steps
    return found


def _text(name: str, e: dict, reg: list[M.Metric], found: dict) -> str:
    """One sentence: where the condition beats its baseline, with the step-1 difference and interval."""
    H = len(next(iter(e["per_step"].values())))
    parts = []
    for m in (m for m in reg if m.headline):
        if m.higher_is_better is None:
            v = e["per_step"][m.name][-1]
            crossed = [f"{n} at steps {_steps(s)}" for n, s in flags(e["per_step"][m.name], m).items() if s]
            ok = "; ".join(crossed) or ("not " + " or ".join(n for n, _, _ in m.flags) if m.flags else "")
            parts.append(f"{m.name} at step {H} is {v:.2f} (ideal {m.ideal:g}{'; ' + ok if ok else ''})")
            continue
        if "vs_baseline" not in e:
            continue
        r = e["vs_baseline"][m.name]
        k, unit = r["beats_steps"], f" {m.unit}" if m.unit else ""
        where = f"at steps 1-{k} of {H}" if k > 1 else ("at step 1 of %d" % H if k == 1 else "at no step")
        detail = f"step 1: {r['diff'][0]:+.3g}{unit}, 95% CI [{r['ci_low'][0]:+.3g}, {r['ci_high'][0]:+.3g}]"
        if np.isnan(r["diff"][0]):
            detail = "undefined on every window"
        worse = f"; worse at steps {_steps(r['worse_steps'])}" if r["worse_steps"] else ""
        parts.append(f"{m.name} {where} ({detail}{worse})")
    if e["condition"] == "model_best":
        name = f"{name} (the best of the rollouts by PSNR against the truth: an oracle choice)"
    head = f"{name} beats {e['baseline']} on " if "vs_baseline" in e else f"{name}: "
    blurred, still = found.get(f"{M.BLURRED}_steps"), found.get(f"{M.STILL}_steps")
    if blurred and "vs_baseline" in e:
        head = (f"{name} is {M.BLURRED} (sharpness under {M.BLURRED_BELOW:g} of the truth's at steps {_steps(blurred)}), so it "
                f"beats nothing; a blurred mean scores without predicting. Paired with {e['baseline']} it would be ahead on ")
    elif still and "vs_baseline" in e:
        head = (f"{name} stands {M.STILL} (motion under {M.STILL_BELOW:g} of the truth's at steps {_steps(still)}): it does "
                f"not move with the scene there, so what it wins is a better copy. It beats {e['baseline']} on ")
    return head + "; ".join(parts)


def per_video(df: pd.DataFrame) -> dict[str, dict[str, dict[str, list[float]]]]:
    """metric -> condition label -> video -> mean per step (NaN skipped)."""
    means = df.groupby(["metric", "condition", "sampler", "video", "step"], sort=False)["value"].mean()
    out: dict[str, dict[str, dict[str, list[float]]]] = {}
    for (m, c, s, v), g in means.groupby(level=["metric", "condition", "sampler", "video"], sort=False):
        out.setdefault(m, {}).setdefault(label(c, s), {})[v] = floats(g.sort_index(level="step").to_numpy())
    return out


def checks(conditions: dict[str, Any], horizon: int) -> dict[str, Any]:
    """Red flags of an evaluation that fools itself (a metric that never moves)."""
    psnr = {n: np.array(c["per_step"]["psnr"]) for n, c in conditions.items()}
    # copies of the last frame, the same by construction where the tokenizer is exact (decoded and real), nothing
    # moves (the motion oracle's flow is 0) or the horizon is 1 (copy_previous)
    copies = {"copy_last", PIXEL_COPY, MOTION_ORACLE} | ({"copy_previous"} if horizon == 1 else set())
    names = sorted(psnr)
    identical = [f"{a} == {b}" for i, a in enumerate(names) for b in names[i + 1 :]
                 if not {a, b} <= copies and np.allclose(psnr[a], psnr[b], atol=1e-9)]
    best = np.max([v for n, v in psnr.items() if n not in ("ceiling", PIXEL_COPY, MOTION_ORACLE)], axis=0)  # decoded, truth unseen
    models = [c for c in conditions.values() if c["condition"] == "model"]
    return {
        "identical_conditions": identical,  # two conditions with the same PSNR at every step: a bug
        "ceiling_best_every_step": bool(np.all(psnr["ceiling"] >= best)),
        "any_model_beats_copy_last_step1": any(c["verdict"]["beats_steps"].get("psnr", 0) >= 1 for c in models),
    }


def verdict_lines(conditions: dict[str, Any]) -> list[str]:
    """The verdict sentences of the paired conditions, in display order (the report shows them first),
    then what the tokenizer costs against copying the real frames."""
    lines = [c["verdict"]["text"] for c in conditions.values() if c["baseline"] is not None]
    if {PIXEL_COPY, "copy_last", "ceiling"} <= set(conditions):
        real, copy, ceil = (np.array(conditions[n]["per_step"]["psnr"]) for n in (PIXEL_COPY, "copy_last", "ceiling"))
        below = [int(k) + 1 for k in np.flatnonzero(ceil < real)]
        lines.append(f"{PIXEL_COPY} (the real last frame, no tokenizer) has psnr {real[0]:.2f} dB at step 1, the decoded "
                     f"copy_last {copy[0]:.2f} dB: the tokenizer costs a copy {real[0] - copy[0]:.2f} dB, and every decoded "
                     f"condition pays it, so copy_last is the dynamics model's floor; the ceiling (the truth decoded) has "
                     f"{ceil[0]:.2f} dB at step 1"
                     + (f" and is below the real copy at steps {_steps(below)}: no decoded prediction beats copying the "
                        "video there" if below else ""))
    if {MOTION_ORACLE, "copy_last", "ceiling"} <= set(conditions):
        moved, copy, ceil = (np.array(conditions[n]["per_step"]["psnr"]) for n in (MOTION_ORACLE, "copy_last", "ceiling"))
        lines.append(f"{MOTION_ORACLE} (copy_last's frame warped by the true optical flow: an oracle) has psnr "
                     f"{moved[0]:.2f} dB at step 1 and {moved[-1]:.2f} at step {len(moved)}, {moved[0] - copy[0]:+.2f} and "
                     f"{moved[-1] - copy[-1]:+.2f} over copy_last: at most what following the motion of what was seen adds "
                     "(a warp this free gains some of it on any frame); the other "
                     f"{ceil[0] - moved[0]:.2f} and {ceil[-1] - moved[-1]:.2f} dB to the ceiling are what no move explains")
    return lines


def build(df: pd.DataFrame, fps: dict[str, float], horizon: int) -> dict[str, Any]:
    """The statistical part of summary.json from the long metrics table."""
    conditions = summarise(df, fps)
    return {
        "metrics": [m for m in M.describe() if m["name"] in set(df.metric)],
        "verdict": verdict_lines(conditions),
        "conditions": conditions,
        "per_video": per_video(df),
        "checks": checks(conditions, horizon),
        "bootstrap": {"resamples": BOOTSTRAP_RESAMPLES, "seed": BOOTSTRAP_SEED, "confidence": CONFIDENCE, "unit": "window"},
    }


def action_summary(conditions: dict, sampler: str, action_paths, truth_paths, expect) -> dict[str, Any]:
    """Controllability (PSNR of rollouts with the window's actions minus with random actions, per
    step, paired by window, bootstrap interval) and, with the videos' true actions, the normalised
    mutual information between the model's actions and the true ones over every test frame."""
    ctrl = conditions[label("model", sampler)].get("vs_actions", {}).get("random_actions", {}).get("psnr")
    out: dict[str, Any] = {"controllability_psnr": ctrl, "lines": []}
    if ctrl:
        k = min(4, len(ctrl["diff"])) - 1
        out["lines"].append(f"controllability: PSNR with the inferred actions minus with random actions at step {k + 1}: "
                            f"{ctrl['diff'][k]:+.2f} dB, 95% CI [{ctrl['ci_low'][k]:+.2f}, {ctrl['ci_high'][k]:+.2f}]")
    if truth_paths:
        ours, truth = [], []
        for a, t in zip(action_paths, truth_paths):
            tt = read_store(t)
            if len(tt) and tt.max() >= 0:  # videos with actions of their own
                ours.append(read_store(a, expect, frames=len(tt)))
                truth.append(tt)
        if truth:
            out["nmi_latent_true"] = nmi(np.concatenate(ours), np.concatenate(truth))
            out["nmi_frames"] = int(sum(len(t) - 1 for t in truth))
            out["lines"].append(f"NMI(latent actions, true actions) on {len(truth)} test videos: {out['nmi_latent_true']:.3f}")
    return out
