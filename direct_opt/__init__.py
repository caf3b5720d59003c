"""direct_opt: principled sample selection for the annealing phase of LLM pre-training."""

from .constraints import (
    AggregateStiffBudget,
    Constraint,
    GroupQuota,
    LinearConstraint,
    MustExclude,
    MustInclude,
    TokenBudget,
    WeightBudget,
)
from .errors import UnsupportedConstraintError
from .problem import SelectionProblem
from .result import SelectionResult
from .solvers import Backend, available_backends, register_backend, solve
from .stats import GradientStats

__version__ = "0.1.0"

__all__ = [
    "AggregateStiffBudget",
    "Backend",
    "Constraint",
    "GradientStats",
    "GroupQuota",
    "LinearConstraint",
    "MustExclude",
    "MustInclude",
    "SelectionProblem",
    "SelectionResult",
    "TokenBudget",
    "UnsupportedConstraintError",
    "WeightBudget",
    "available_backends",
    "register_backend",
    "solve",
    "__version__",
]
