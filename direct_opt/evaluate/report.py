"""EvalReport: per-run records, the per-selector summary, the table, results.json.

``results.json`` (format ``direct_opt.eval_report``, version 1) holds:

* ``config``: the resume fingerprint's inputs (checkpoint / data fingerprints, K,
  schedule, extraction config), the selector specs, seeds, baseline, level, meta;
* ``seeds``, ``k``, ``labels``, ``baseline``, ``target_group``, ``level``;
* ``stats``: ``{n, r, k_star, k, extract_time_s, checksum}`` (None when nothing was extracted);
* ``summary``: label -> ``{test, val}`` (mean/std/n of the final losses),
  ``test_before``/``val_before`` (the checkpoint), ``diff_test_vs_baseline`` /
  ``diff_val_vs_baseline`` (paired difference label − baseline over seeds: mean, std,
  n, low, high, t_crit, level, seeds, significant; None for the baseline itself),
  ``selection_time_s`` (mean/std/n), ``anneal_time_s``, ``composition`` (mean fraction
  per pool group), ``target_fraction``, ``degraded_fraction``, ``program`` (mean DiReCT
  objective, certified ratio, fraction of selections within the stiff budget),
  ``distinct_selections``, ``per_seed`` (final test/val loss by seed), ``curves``
  (split -> ``{steps, mean, std}``);
* ``compare_to``: labels the table also compares with (e.g. ``["less"]``; :meth:`EvalReport.diff`
  computes any pair);
* ``ranking``: labels by mean final test loss (best first); ``runs``: every run record
  (label, selector, seed, k, indices, selection_time_s, diagnostics, program,
  composition, before, final, curves, anneal_steps, anneal_time_s, fingerprint).

Losses are mean next-token cross-entropy in nats per byte (lower is better).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import InvalidInputError
from ..output import write_output
from ..result import _jsonable
from .intervals import paired_difference, summarize

FORMAT = "direct_opt.eval_report"
VERSION = 1


def _mean(xs: Sequence[float]) -> float | None:
    xs = [float(x) for x in xs if x is not None and math.isfinite(float(x))]
    return float(np.mean(xs)) if xs else None


def build_summary(runs: Sequence[Mapping[str, Any]], labels: Sequence[str], seeds: Sequence[int],
                  baseline: str | None, target_group: str | None, level: float = 0.95) -> dict[str, Any]:
    """Per-selector summary of run records (see the module docstring for the fields)."""
    by = {(r["label"], int(r["seed"])): r for r in runs}
    per_seed = {lab: {split: {s: float(by[(lab, s)]["final"][split]) for s in seeds if (lab, s) in by}
                      for split in ("test", "val")} for lab in labels}
    out: dict[str, Any] = {}
    for lab in labels:
        rs = [by[(lab, s)] for s in seeds if (lab, s) in by]
        if not rs:
            continue
        entry: dict[str, Any] = {"n": len(rs)}
        for split in ("test", "val"):
            entry[split] = summarize(list(per_seed[lab][split].values())).to_dict()
            entry[f"{split}_before"] = _mean([r["before"][split] for r in rs])
            if baseline is not None and lab != baseline and baseline in per_seed and per_seed[baseline][split]:
                common = set(per_seed[lab][split]) & set(per_seed[baseline][split])
                entry[f"diff_{split}_vs_baseline"] = (
                    paired_difference(per_seed[lab][split], per_seed[baseline][split], level).to_dict()
                    if common else None)
            else:
                entry[f"diff_{split}_vs_baseline"] = None
        entry["selection_time_s"] = summarize([r["selection_time_s"] for r in rs]).to_dict()
        entry["anneal_time_s"] = _mean([r["anneal_time_s"] for r in rs])
        comps = [r.get("composition") for r in rs]
        if all(c is not None for c in comps):
            keys = sorted({g for c in comps for g in c})
            entry["composition"] = {g: float(np.mean([c.get(g, 0.0) for c in comps])) for g in keys}
            entry["degraded_fraction"] = float(np.mean(
                [sum(v for g, v in c.items() if g.startswith("degraded:")) for c in comps]))
            entry["target_fraction"] = (None if target_group is None
                                        else float(np.mean([c.get(target_group, 0.0) for c in comps])))
        else:
            entry["composition"] = entry["degraded_fraction"] = entry["target_fraction"] = None
        progs = [r.get("program") for r in rs]
        if all(p is not None for p in progs):
            entry["program"] = {
                "objective": _mean([p["objective"] for p in progs]),
                # mean over the selections within the stiff budget (the bound holds only there)
                "certified_ratio": _mean([p["certified_ratio"] for p in progs if p["budget_ok"]]),
                "stiff_cost": _mean([p["stiff_cost"] for p in progs]),
                "tau": progs[0]["tau"],
                "budget_ok_fraction": float(np.mean([bool(p["budget_ok"]) for p in progs])),
            }
        else:
            entry["program"] = None
        entry["distinct_selections"] = len({tuple(r["indices"]) for r in rs})
        entry["per_seed"] = {split: {str(s): v for s, v in per_seed[lab][split].items()} for split in ("test", "val")}
        curves = {}
        for split in ("test", "val"):
            cs = [r["curves"][split] for r in rs if split in r.get("curves", {})]
            if cs and all(len(c) == len(cs[0]) for c in cs):
                arr = np.asarray([[v for _, v in c] for c in cs], dtype=np.float64)
                curves[split] = {"steps": [int(s) for s, _ in cs[0]], "mean": arr.mean(0).tolist(),
                                 "std": (arr.std(0, ddof=1) if len(cs) > 1 else np.zeros(arr.shape[1])).tolist()}
        entry["curves"] = curves
        out[lab] = entry
    return out


def _fmt(x: float | None, nd: int = 4) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{nd}f}"


def _fmt_diff(d: Mapping[str, Any] | None) -> str:
    if d is None:
        return "—"
    if d.get("low") is None:
        return f"{d['mean']:+.4f} (n={d['n']}, no CI)"
    star = " *" if d.get("significant") else ""
    return f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]{star}"


@dataclass
class EvalReport:
    """Outcome of :func:`direct_opt.evaluate.evaluate` (see the module docstring)."""

    config: dict[str, Any]
    runs: list[dict[str, Any]]
    labels: list[str]
    seeds: list[int]
    baseline: str | None
    summary: dict[str, Any]
    stats_info: dict[str, Any] | None = None
    target_group: str | None = None
    level: float = 0.95
    paths: dict[str, str] = field(default_factory=dict)
    #: labels the table also compares every selector with (besides the baseline), e.g. ["less"]
    compare_to: list[str] = field(default_factory=list)

    # ------------------------------------------------------------------ access
    def run(self, label: str, seed: int) -> dict[str, Any]:
        """The record of one (selector, seed) run."""
        for r in self.runs:
            if r["label"] == label and int(r["seed"]) == int(seed):
                return r
        raise InvalidInputError(f"no run ({label!r}, seed {seed}); labels: {self.labels}, seeds: {self.seeds}.")

    def final_losses(self, label: str, split: str = "test") -> dict[int, float]:
        """seed -> final loss of ``label`` on ``split`` ("test" or "val")."""
        return {int(r["seed"]): float(r["final"][split]) for r in self.runs if r["label"] == label}

    @property
    def ranking(self) -> list[str]:
        """Labels by mean final test loss, best (lowest) first."""
        return sorted(self.summary, key=lambda lab: self.summary[lab]["test"]["mean"])

    @property
    def winner(self) -> str:
        return self.ranking[0]

    def diff(self, label: str, against: str | None = None, split: str = "test") -> dict[str, Any] | None:
        """Paired difference ``label`` − ``against`` (default: the baseline) of the final ``split``
        loss over their common seeds (the fields of ``diff_test_vs_baseline``); None without
        common seeds or when ``label == against``."""
        against = self.baseline if against is None else against
        for lab in (label, against):
            if lab is not None and lab not in self.summary:
                raise InvalidInputError(f"no selector labelled {lab!r} in this report; labels: {self.labels}.")
        if against is None or label == against:
            return None
        x, y = self.final_losses(label, split), self.final_losses(against, split)
        if not set(x) & set(y):
            return None
        return paired_difference(x, y, self.level).to_dict()

    def verdict(self, label: str, split: str = "test", against: str | None = None) -> str:
        """One honest line: did ``label`` beat ``against`` (default: the baseline) on held-out ``split`` loss?"""
        ref = self.baseline if against is None else against
        if ref is None or label == ref:
            return f"{label}: no baseline comparison."
        d = self.summary[label][f"diff_{split}_vs_baseline"] if ref == self.baseline else self.diff(label, ref, split)
        if d is None:
            return f"{label}: no paired runs with {ref}."
        lower = d["mean"] < 0
        if d.get("low") is None:
            word = "is not shown to beat" if lower else "did NOT beat"
            extra = f"single seed (n={d['n']}), no interval — not conclusive"
        elif d["significant"]:  # the interval excludes 0: the only case that earns "beat"
            word = "beat" if lower else "did NOT beat"
            extra = f"95% CI [{d['low']:+.4f}, {d['high']:+.4f}] excludes 0, n={d['n']} seeds"
        else:
            word = "is not shown to beat" if lower else "did NOT beat"
            extra = f"95% CI [{d['low']:+.4f}, {d['high']:+.4f}] includes 0 (not significant), n={d['n']} seeds"
        return (f"{label} {word} {ref} on held-out {split} loss: mean paired difference "
                f"{d['mean']:+.4f} {self.loss_unit} ({extra}).")

    # ------------------------------------------------------------------- table
    @property
    def loss_unit(self) -> str:
        """``nats/byte`` (TinyGPT) or the annealer's unit (``nats/token`` for Hugging Face models)."""
        return str(self.config.get("core", {}).get("loss_unit", "nats/byte"))

    def table(self, against: Sequence[str] | None = None) -> str:
        """Markdown table: final losses (mean ± sd), paired Δ vs the baseline (and vs each label in
        ``against``, default :attr:`compare_to`, e.g. ``["less"]``) with CI, composition, time."""
        against = [a for a in (self.compare_to if against is None else against) if a != self.baseline]
        for a in against:
            if a not in self.summary:
                raise InvalidInputError(f"no selector labelled {a!r} to compare against; labels: {self.labels}.")
        n = len(self.seeds)
        has_comp = any(self.summary[l].get("degraded_fraction") is not None for l in self.summary)
        has_prog = any(self.summary[l].get("program") is not None for l in self.summary)
        tgt = self.target_group
        head = ["selector", "test loss (mean ± sd)", f"Δ test vs {self.baseline} [{int(self.level * 100)}% CI]",
                *(f"Δ test vs {a} [{int(self.level * 100)}% CI]" for a in against), "val loss (mean ± sd)"]
        if has_comp:
            if tgt:
                head.append(f"frac {tgt}")
            head.append("frac degraded:*")
        if has_prog:
            head += ["DiReCT f/UB", "in budget"]
        head.append("select time (s)")
        rows = []
        for lab in self.labels:
            s = self.summary.get(lab)
            if s is None:
                continue
            row = [lab, f"{s['test']['mean']:.4f} ± {s['test']['std']:.4f}", _fmt_diff(s["diff_test_vs_baseline"]),
                   *(_fmt_diff(self.diff(lab, a)) for a in against), f"{s['val']['mean']:.4f} ± {s['val']['std']:.4f}"]
            if has_comp:
                if tgt:
                    row.append(_fmt(s.get("target_fraction"), 3))
                row.append(_fmt(s.get("degraded_fraction"), 3))
            if has_prog:
                p = s.get("program") or {}
                row += [_fmt(p.get("certified_ratio"), 3), _fmt(p.get("budget_ok_fraction"), 2)]
            row.append(f"{s['selection_time_s']['mean']:.3f}")
            rows.append(row)
        first = self.summary[self.labels[0]] if self.labels and self.labels[0] in self.summary else None
        before = "" if first is None else (f" Checkpoint before annealing: test {first['test_before']:.4f}, "
                                           f"val {first['val_before']:.4f}.")
        notes = (
            f"n = {n} seed(s) {self.seeds}; K = {self.config.get('k')}; losses in {self.loss_unit} (lower is better)."
            f"{before}\nΔ = paired difference (selector − {', '.join([str(self.baseline), *against])}, same seed), "
            "mean with a two-sided "
            f"{int(self.level * 100)}% Student-t interval over the n seeds (n−1 dof); * = interval excludes 0; "
            "negative Δ = lower loss than the baseline."
        )
        if has_prog:
            notes += ("\nDiReCT f/UB = the selection's DiReCT objective over the certified upper bound (mean over "
                      "the selections within the stiff budget; n/a: none was); in budget = fraction of seeds "
                      "whose selection satisfies the stiff budget aᵀw ≤ τ.")
        lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        if self.config.get("schedule_gain"):
            from .schedule import decision_line

            lines += ["", decision_line(self.summary, self.baseline, self.config["schedule_gain"])]
        return notes + "\n\n" + "\n".join(lines)

    # --------------------------------------------------------------------- I/O
    def to_dict(self) -> dict[str, Any]:
        """The results.json content."""
        return _jsonable({
            "format": FORMAT, "version": VERSION, "config": self.config, "seeds": self.seeds,
            "k": self.config.get("k"), "labels": self.labels, "baseline": self.baseline,
            "target_group": self.target_group, "level": self.level, "stats": self.stats_info,
            "summary": self.summary, "ranking": self.ranking, "runs": self.runs, "compare_to": self.compare_to,
        })

    def save(self, out_dir: str | Path, plot: bool = True) -> dict[str, str]:
        """Write results.json, table.md and (``plot``) eval.png into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_output(out / "results.json", json.dumps(_jsonable(self.to_dict()), indent=1))
        write_output(out / "table.md", self.table() + "\n")
        self.paths = {"results": str(out / "results.json"), "table": str(out / "table.md")}
        if plot:
            from ..plotting import save_eval_figure

            save_eval_figure(self.to_dict(), out / "eval.png")
            self.paths["plot"] = str(out / "eval.png")
        return self.paths

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvalReport":
        if d.get("format") != FORMAT:
            raise InvalidInputError(f"not an evaluation report (format {d.get('format')!r}, expected {FORMAT!r}).")
        return cls(config=dict(d["config"]), runs=list(d["runs"]), labels=list(d["labels"]),
                   seeds=[int(s) for s in d["seeds"]], baseline=d.get("baseline"), summary=dict(d["summary"]),
                   stats_info=d.get("stats"), target_group=d.get("target_group"), level=float(d.get("level", 0.95)),
                   compare_to=list(d.get("compare_to", [])))

    @classmethod
    def load(cls, path: str | Path) -> "EvalReport":
        """Read a results.json written by :meth:`save`."""
        p = Path(path)
        if p.is_dir():
            p = p / "results.json"
        return cls.from_dict(json.loads(p.read_text()))
