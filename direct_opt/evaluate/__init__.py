"""The evaluation harness: does a selection help after annealing? (docs/evaluation.md)

    from direct_opt.evaluate import evaluate, AnnealSchedule
    report = evaluate(state, lm_loss, corpus.pool, corpus.val, corpus.test,
                      ["random", "direct", "less"], k=200, seeds=[0, 1, 2],
                      schedule=AnnealSchedule(shape="linear", epochs=4),
                      pool_groups=corpus.pool_groups, target_group="clean:docstrings", out_dir="eval")
    print(report.table())
    print(report.verdict("direct"))

Every selector is run for every seed from the same checkpoint (weights + optimizer
state), annealed with a WSD decay phase, and compared with ``random`` by a paired
difference over seeds with a Student-t interval. See docs/evaluation.md.
"""

from .harness import (
    Checkpoint,
    DataOverlapError,
    ResumeMismatchError,
    check_disjoint,
    data_fingerprint,
    evaluate,
    write_json_atomic,
)
from .intervals import PairedDifference, Summary, paired_difference, summarize, t_critical
from .lm_setup import CORPORA, LMSetup, build_corpus, prepare
from .report import EvalReport, build_summary
from .schedule import AnnealSchedule, decision_line, schedule_gain
from .spec import ALL_SELECTORS, SelectorSpec, parse_selector, parse_selectors

__all__ = [
    "ALL_SELECTORS", "AnnealSchedule", "CORPORA", "Checkpoint", "DataOverlapError", "EvalReport", "LMSetup",
    "PairedDifference", "ResumeMismatchError", "SelectorSpec", "Summary", "build_corpus", "build_summary",
    "check_disjoint", "data_fingerprint", "evaluate", "paired_difference", "parse_selector", "parse_selectors",
    "decision_line", "prepare", "schedule_gain", "summarize", "t_critical", "write_json_atomic",
]
