"""The exceptions lipverify raises; every one derives from :class:`LipVerifyError`."""

from __future__ import annotations


class LipVerifyError(Exception):
    """Base class of every error raised on purpose by lipverify."""


class ShapeError(LipVerifyError, ValueError):
    """A layer does not fit the shape that reaches it, or an input has the wrong shape."""


class UnsupportedLayerError(LipVerifyError):
    """A method met a layer it cannot handle; it raises instead of skipping the layer."""


class NotApplicableError(LipVerifyError, ValueError):
    """A method does not apply to this norm or network (for example ``k3`` with the l2 norm)."""


class SolverError(LipVerifyError):
    """A numerical solver failed or returned a status that is not an optimum."""


class CertificationError(LipVerifyError):
    """A numerical result could not be proven to be a valid bound."""


class ModelFormatError(LipVerifyError, ValueError):
    """A model file or object cannot be read or contains something unsupported."""


class NumericalError(LipVerifyError, ArithmeticError):
    """A computation overflowed or produced NaN; no number is reported."""


class InternalConsistencyError(LipVerifyError):
    """Two results contradict each other (an upper bound below a certified lower bound of the same constant).

    One of them is wrong, so neither is reported: this is a bug in lipverify (or in a user-defined activation
    that misdeclares its slopes); please report it with the network."""
