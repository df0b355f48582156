"""LipSDP and the SDP certificate machinery (``proofs/lipsdp.md``, ``proofs/ksdp.md``).

* :mod:`lipverify.sdp.certificate`: the trusted kernel (rounding to dyadic rationals, exact / verified-Cholesky
  proofs of positive definiteness, the Schur-complement estimate, the candidate loop); no solver code;
* :mod:`lipverify.sdp.scaling`: exact power-of-two scaling of the weights (shared by LipSDP and KSDP);
* :mod:`lipverify.sdp.solvers`: the solvers (lipverify's structured interior-point method, the CVXOPT
  structured KKT path, cvxpy with SCS / Clarabel), the input-block reduction, the fallback order and the
  Clarabel size guard;
* :mod:`lipverify.sdp.lipsdp`: the LipSDP method (problem construction, rebalancing, the method itself).

KSDP (``lipverify.bounds.ksdp``) uses the same kernel, scaling and adapters.
"""

from __future__ import annotations

from .certificate import (
    ANCHOR_MARGIN,
    DYADIC_BITS,
    EXACT_MAX_SIZE,
    LOSS_WARN,
    MARGINS,
    MIX_WEIGHTS,
    Certificate,
    Certification,
    LipSDPProblem,
    assemble,
    certify,
    check_certificate,
    first_proven,
    inflated,
    lmi_blocks,
    round_multipliers,
    schur_rho,
)
from .lipsdp import DEFAULT_MAX_NEURONS, REPAIR_LOSS, lipsdp, lmi_size, problem_from_chain, rebalance, verify
from .scaling import BALANCED, REBALANCE_ROUNDS, RHO_BALANCED, scale_entries
from .solvers import (
    CLARABEL_MAX_SIZE,
    DEFAULT_SOLVERS,
    FORMULATE_MAX_ENTRIES,
    LIPSDP_SOLVERS,
    SOLVERS,
    StructuredIPM,
    formulate,
    reduce_input,
)

__all__ = [
    "ANCHOR_MARGIN", "BALANCED", "CLARABEL_MAX_SIZE", "DEFAULT_MAX_NEURONS", "DEFAULT_SOLVERS", "DYADIC_BITS",
    "EXACT_MAX_SIZE", "FORMULATE_MAX_ENTRIES", "LIPSDP_SOLVERS", "LOSS_WARN", "MARGINS", "MIX_WEIGHTS", "REBALANCE_ROUNDS",
    "REPAIR_LOSS", "RHO_BALANCED", "SOLVERS", "Certificate", "Certification", "LipSDPProblem", "assemble",
    "certify", "check_certificate", "first_proven", "formulate", "inflated", "lipsdp", "lmi_blocks", "lmi_size",
    "problem_from_chain", "rebalance", "reduce_input", "round_multipliers", "scale_entries", "schur_rho",
    "StructuredIPM", "verify",
]
