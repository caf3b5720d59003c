"""Every error type the library raises on purpose.

All input problems are ``ValueError`` subclasses so callers can catch them broadly;
each message says what was wrong and what to do about it.
"""

from __future__ import annotations


class DirectOptError(Exception):
    """Base class of every error raised on purpose by direct_opt."""


class InvalidInputError(DirectOptError, ValueError):
    """Generic bad input (wrong type, empty array, out-of-range parameter)."""


class ShapeMismatchError(InvalidInputError):
    """Arrays whose shapes do not agree (e.g. G has N columns but a has M != N entries)."""


class NonFiniteError(InvalidInputError):
    """NaN or Inf found in an input array or a computed quantity."""


class NegativeCostError(InvalidInputError):
    """A stiff cost a_i < 0 (costs are weighted sums of squares and must be >= 0)."""


class InvalidParameterError(InvalidInputError):
    """A scalar parameter out of range: K <= 0, K > N, tau < 0, tau_rel <= 0, ..."""


class DtypeError(InvalidInputError):
    """A non-numeric or unsupported dtype."""


class UnknownNameError(InvalidInputError):
    """An unknown backend / selector / projector / curvature name (the message lists the known ones)."""


class UnsupportedConstraintError(InvalidInputError):
    """A backend was asked to honour a constraint (or objective form) it cannot honour."""


class OutputPathError(InvalidInputError):
    """An output path that cannot or must not be written (empty, a device, FIFO, symlink or
    directory where a file is expected, below a file, or in a directory that refuses new files)."""


class InfeasibleProblemError(DirectOptError, ValueError):
    """No integer selection satisfies the constraints (raised only where a result cannot carry the status)."""


class StatsFormatError(DirectOptError, ValueError):
    """A stats directory is missing, truncated, tampered with, or of an unknown format version."""


class ExtractionError(DirectOptError, ValueError):
    """Gradient extraction failed on bad input (empty pool, wrong loss shape, non-finite gradient...)."""


class OutputLockedError(DirectOptError, RuntimeError):
    """Another process holds the lock on an output directory."""


class SolverError(DirectOptError, RuntimeError):
    """A numerical solver failed to return any point (not an infeasibility verdict)."""
