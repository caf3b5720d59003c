"""``direct-opt online``: online vs static selection on an embedded corpus, equal steps and equal compute.

    direct-opt online --list
    direct-opt online --corpus stdlib --seeds 0,1,2 --out online_eval/
    direct-opt online --corpus site-packages --online blade,greats,uniform --static less,random,direct

Every name and option is checked before the corpus is built or anything is trained.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path
from typing import Any

from ..evaluate.cli import K_FRACTION, parse_seeds, split_selectors
from ..evaluate.lm_setup import CORPORA


def add_parser(subparsers: Any) -> None:
    from ..evaluate.online import ONLINE_DEFAULT, STATIC_DEFAULT

    p = subparsers.add_parser("online", help="online batch selection (blade, rho-loss, greats, ...) vs static selection",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list the online selectors and exit")
    p.add_argument("--corpus", choices=list(CORPORA), default="stdlib")
    p.add_argument("--quick", action="store_true", help="small corpus preset, short pretraining")
    p.add_argument("--seeds", type=parse_seeds, default=[0, 1, 2], help="e.g. 0,1,2 or 0-4 (default 0,1,2)")
    p.add_argument("--online", nargs="+", default=None,
                   help=f"online selectors, name or name:key=value,... (default: {' '.join(ONLINE_DEFAULT)})")
    p.add_argument("--static", nargs="+", default=None,
                   help=f"static selectors for the harness (default: {','.join(STATIC_DEFAULT)}; random is always added)")
    p.add_argument("-k", "--k", type=int, default=None, help="K of the static selectors (default 10%% of the pool); "
                                                             "the anneal has ceil(epochs*K/b) steps")
    p.add_argument("--batch-size", type=int, default=32, help="b, samples per training step (default 32)")
    p.add_argument("--super-batch-factor", type=int, default=4, help="B = factor * b candidates per online step")
    p.add_argument("--anneal-epochs", type=float, default=None, help="decay length in epochs over K (default 4)")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--data-seed", type=int, default=0)
    for name in ("n-pool", "n-val", "n-test", "n-pretrain", "pretrain-steps"):
        p.add_argument(f"--{name}", type=int, default=None)
    p.add_argument("--no-equal-compute", dest="equal_compute", action="store_false")
    p.add_argument("--out", default=None, help="output directory (results.json, table.md, plots, runs)")
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import InvalidParameterError
    from ..evaluate.harness import _check_names
    from ..evaluate.online import ONLINE_DEFAULT, STATIC_DEFAULT, check_online_specs, evaluate_online
    from ..evaluate.schedule import AnnealSchedule
    from ..evaluate.spec import parse_selectors
    from ..online import ONLINE

    if args.list:
        for name, d in ONLINE.describe().items():
            caps = ",".join(f"{k}={v}" for k, v in d["capabilities"].items())
            print(f"{name:10s} {caps:28s} {d['description']}")
        return 0
    online = split_selectors(args.online) if args.online else list(ONLINE_DEFAULT)
    static = split_selectors(args.static) if args.static else list(STATIC_DEFAULT)
    check_online_specs(online)  # names and options: before any work
    _check_names(parse_selectors(static))
    for name in ("batch_size", "super_batch_factor", "eval_every"):
        if getattr(args, name) <= 0:
            raise InvalidParameterError(f"--{name.replace('_', '-')} must be positive.")
    schedule = AnnealSchedule(batch_size=args.batch_size, eval_every=args.eval_every, epochs=args.anneal_epochs)
    from ..evaluate.lm_setup import prepare
    from ..lm import lm_loss

    t0 = time.perf_counter()
    out = Path(args.out) if args.out else None
    setup = prepare(args.corpus, data_seed=args.data_seed, quick=args.quick, n_pool=args.n_pool, n_val=args.n_val,
                    n_test=args.n_test, n_pretrain=args.n_pretrain, pretrain_steps=args.pretrain_steps, cache_dir=out,
                    log=print if args.progress else None)
    n = int(setup.corpus.pool.shape[0])
    k = args.k or max(1, int(math.ceil(K_FRACTION * n)))
    rep = evaluate_online(setup.state, lm_loss, setup.corpus.pool, setup.corpus.val, setup.corpus.test,
                          online=online, static=static, k=k, seeds=args.seeds, schedule=schedule,
                          super_batch_factor=args.super_batch_factor, pool_groups=setup.corpus.pool_groups,
                          target_group=setup.target_group, equal_compute=args.equal_compute, out_dir=out,
                          progress=args.progress, plot=args.plot, meta={"setup": setup.info})
    c = rep["config"]
    print(f"\ncorpus {args.corpus} (target {setup.target_group}), pool N={n}, K={k}, b={c['b']}, B={c['B']}, "
          f"{c['n_steps']} steps, seeds {c['seeds']}; compute budget {c['budget_units']} forward units "
          f"(extraction {c['extraction_units']})")
    print(rep["table"])
    if out is not None:
        print(f"written: {out / 'results.json'}, {out / 'table.md'}" + (", plots" if args.plot else ""))
    print(f"total time {time.perf_counter() - t0:.1f}s")
    return 0
