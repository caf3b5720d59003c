"""The selection-quality protocol behind ``DEFAULT_SELECTOR`` (docs/evaluation.md, "Does anything beat LESS?").

    python benchmarks/selection_protocol.py --out runs/protocol            # tune, confirm, decide
    python benchmarks/selection_protocol.py --out runs/protocol --stage decide   # from finished runs

1. **Tune** on the stdlib corpus only (3 seeds): every configuration in ``TUNING`` (counted and
   printed, so the multiple-comparison risk is visible), next to the baselines.
2. **Confirm** the configuration of each new selector fixed in ``CONFIRM`` (chosen from the
   tuning table before the confirmation corpora were run) on site-packages and c-headers,
   corpora never tuned on, with 5 seeds; stdlib is re-run with 5 seeds for the tables.
3. **Decide**: a selector replaces faithful ``less`` as the default only if its paired 95 %
   interval against ``less`` lies below 0 on *both* confirmation corpora.

Every run goes through ``direct-opt evaluate`` (resumable: finished runs in ``--out`` are
reused). The loss values are deterministic (a run from scratch reproduced every number). From
scratch it took 1065 s of wall time and 1016 s of CPU time on the 2-core machine at load 1–2
(it runs on one core; anneals of 25 steps take about 3 s, the extraction with Adam features
about 1 min per corpus).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from direct_opt.cli import main
from direct_opt.evaluate import EvalReport

BASELINES = ["random", "less", "less:variant=mean-gradient", "less:features=sgd", "taylor", "direct"]
#: every configuration of the new selectors tried on the tuning corpus (stdlib), in the order tried
TUNING = [
    "taylor-fisher", "taylor-fisher:eta=0.001", "taylor-fisher:eta=0.01", "taylor-fisher:eta=0.03",
    "taylor-fisher:eta=0.1",
    "direct-aligned:beta=0", "direct-aligned:beta=0.03", "direct-aligned:beta=0.1", "direct-aligned:beta=0.3",
    "direct-aligned", "direct-aligned:beta=3", "direct-aligned:alignment=taylor",
    "direct-aligned:beta=0.1,budget_frac=1",
    "less-diverse:lam=0.3", "less-diverse:lam=1", "less-diverse:lam=3", "less-diverse:lam=10",
    "less-diverse:lam=30", "less-diverse:lam=100", "less-diverse:lam=300", "less-diverse:lam=1000",
    "less-diverse:lam=10000",
]
#: the tuned configuration of each new selector (less-diverse's default is lam = 100), plus the
#: heuristics of the earlier evaluation; fixed before the confirmation corpora were run
CONFIRM = [*BASELINES[:4], "less-diverse", "less-diverse:backend=sca-osqp", "taylor", "taylor-fisher:eta=0.03",
           "direct", "direct-aligned:beta=0.03", "grad-norm", "loss", "excess-loss"]
CONFIRMATION_CORPORA = ("site-packages", "c-headers")


def _evaluate(out: Path, corpus: str, selectors: list[str], seeds: str, stdlib_tuning: bool) -> EvalReport:
    cfg = out / f"{'tune' if stdlib_tuning else 'confirm'}-{corpus}.json"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(json.dumps({"selectors": selectors, "plot": not stdlib_tuning, "progress": False}))
    run_dir = out / (f"tune-{corpus}" if stdlib_tuning else f"final-{corpus}")
    if main(["evaluate", "--config", str(cfg), "--corpus", corpus, "--seeds", seeds, "--out", str(run_dir)]) != 0:
        raise SystemExit(f"direct-opt evaluate failed for {corpus}")
    return EvalReport.load(run_dir)


def decide(reports: dict[str, EvalReport]) -> str:
    """The decision line: which selectors beat faithful less on every confirmation corpus."""
    labels = [lab for lab in reports[CONFIRMATION_CORPORA[0]].labels if lab != "less"]
    winners = []
    for lab in labels:
        diffs = [reports[c].diff(lab, "less") for c in CONFIRMATION_CORPORA]
        if all(d is not None and d["significant"] and d["mean"] < 0 for d in diffs):
            cis = [f"{c}: {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]" for c, d in zip(CONFIRMATION_CORPORA, diffs)]
            winners.append(f"{lab} ({', '.join(cis)})")
    if not winners:
        return "DECISION: no selector beat faithful less on both confirmation corpora; the default stays less."
    return "DECISION: beat faithful less on both confirmation corpora (95% CI below 0): " + "; ".join(winners)


def run(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/protocol", help="directory for every run (resumable)")
    ap.add_argument("--stage", choices=["all", "tune", "confirm", "decide"], default="all")
    args = ap.parse_args(argv)
    out = Path(args.out)
    if args.stage in ("all", "tune"):
        rep = _evaluate(out, "stdlib", BASELINES + TUNING, "0-2", stdlib_tuning=True)
        print(f"\n## Tuning (stdlib, 3 seeds): {len(TUNING)} configurations of the new selectors\n")
        print(rep.table(against=["less"]))
    if args.stage in ("all", "confirm", "decide"):
        reports = {}
        for corpus in ("stdlib", *CONFIRMATION_CORPORA):
            rep = (EvalReport.load(out / f"final-{corpus}") if args.stage == "decide"
                   else _evaluate(out, corpus, CONFIRM, "0-4", stdlib_tuning=False))
            reports[corpus] = rep
            print(f"\n## {corpus} (5 seeds){' — the tuning corpus' if corpus == 'stdlib' else ''}\n")
            print(rep.table(against=["less"]))
        print("\n" + decide(reports))
    return 0


if __name__ == "__main__":
    sys.exit(run())
