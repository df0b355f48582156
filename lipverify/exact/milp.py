"""LipMIP-style mixed-integer program for ReLU networks on a box: an independent cross-check of :mod:`.regions`.

For a scalar-output ReLU network on the box ``[lower, upper]`` this maximises ``s·∇f(x)`` over ``x`` in
the box, the activation indicators ``δ`` and each sign vector ``s`` (l∞: ``s ∈ {±1}^n``; l1: ``s = ±e_i``),
with the usual big-M encodings of ``h = relu(z)`` (interval bounds of ``z``) and of the gated backward
pass ``u_j = δ_j v_j`` (interval bounds of ``v``).  HiGHS via ``scipy.optimize.milp``, floating point.

The value is **not certified** (float solver, and ``δ`` may take either value on a boundary ``z = 0``, so a
lower-dimensional pattern can be chosen); it is used in tests to cross-check the exact enumeration on
generic networks, never reported as a bound.  Proof sketch: ``proofs/exact.md`` (section "MILP cross-check").
"""

from __future__ import annotations

import itertools

import numpy as np
import scipy.optimize
import scipy.sparse as sp

from ..errors import NotApplicableError, SolverError
from ..layers import ReLU
from ..network import Network
from ..norms import NormLike, parse_norm
from .common import parse_domain, stages


def milp_constant(net: Network, norm: NormLike, domain, *, time_limit: float = 60.0) -> float:
    """``max ||∇f(x)||_p`` over the box by a MILP (p = 1 or ∞; scalar output, ReLU only).  Float, uncertified."""
    p = parse_norm(norm)
    if p == "2":
        raise NotApplicableError("milp: the l2 norm is not linear; use norm 1 or inf")
    st = stages(net, "milp")
    if st[-1].weight.rows != 1:
        raise NotApplicableError("milp: scalar-output networks only")
    for s in st[:-1]:
        if not isinstance(s.act, ReLU):
            raise NotApplicableError(f"milp: layer {s.index} ({s.act.describe()}) is not a ReLU")
    n = net.n_in
    dom = parse_domain(domain, n)
    if dom is None:
        raise NotApplicableError("milp: needs a bounded box domain=(lower, upper)")
    lo = np.array([float(v) for v in dom[0]])
    hi = np.array([float(v) for v in dom[1]])
    ws = [np.array(s.weight.tolist(), dtype=float) for s in st]
    bs = [np.array(s.bias.tolist(), dtype=float)[:, 0] for s in st]
    # forward interval bounds of the pre-activations
    zb = []
    hl, hh = lo, hi
    for w, b in zip(ws[:-1], bs[:-1]):
        wp, wn = np.maximum(w, 0), np.minimum(w, 0)
        zl, zh = wp @ hl + wn @ hh + b, wp @ hh + wn @ hl + b
        zb.append((zl - 1e-9, zh + 1e-9))
        hl, hh = np.maximum(zl, 0), np.maximum(zh, 0)
    # backward magnitude bounds of v_k (the gradient reaching layer k's outputs)
    vmax = [None] * (len(ws) - 1)
    v = np.abs(ws[-1][0])
    for k in range(len(ws) - 2, -1, -1):
        vmax[k] = v + 1e-9
        v = np.abs(ws[k]).T @ v
    # variable layout: x (n) | per hidden layer k: z, h, d (binary), u
    idx = {}
    pos = n
    for k, w in enumerate(ws[:-1]):
        m = w.shape[0]
        for name in ("z", "h", "d", "u"):
            idx[(name, k)] = np.arange(pos, pos + m)
            pos += m
    nvar = pos
    rows, lbs, ubs = [], [], []

    def add(coeffs: dict, lb: float, ub: float) -> None:
        rows.append(coeffs)
        lbs.append(lb)
        ubs.append(ub)

    prev = np.arange(n)
    for k, (w, b) in enumerate(zip(ws[:-1], bs[:-1])):
        z, h, d = idx[("z", k)], idx[("h", k)], idx[("d", k)]
        zl, zh = zb[k]
        for j in range(w.shape[0]):
            c = {int(z[j]): 1.0}
            for i, col in enumerate(prev):
                if w[j, i] != 0:
                    c[int(col)] = c.get(int(col), 0.0) - w[j, i]
            add(c, b[j], b[j])                                                   # z = W h_prev + b
            add({int(h[j]): 1.0, int(z[j]): -1.0}, 0.0, np.inf)                  # h >= z
            add({int(h[j]): 1.0, int(z[j]): -1.0, int(d[j]): -zl[j]}, -np.inf, -zl[j])  # h <= z - l (1 - d)
            add({int(h[j]): 1.0, int(d[j]): -max(zh[j], 0.0)}, -np.inf, 0.0)     # h <= u d
        prev = h
    # backward: v_{L-1} = w_L; u_k = d_k * v_k; v_{k-1} = W_k^T u_k; gradient g = W_1^T u_1
    for k in range(len(ws) - 2, -1, -1):
        u, d = idx[("u", k)], idx[("d", k)]
        m = ws[k].shape[0]
        for j in range(m):
            vcoef: dict = {}
            vconst = 0.0
            if k == len(ws) - 2:
                vconst = ws[-1][0, j]
            else:
                for r, ucol in enumerate(idx[("u", k + 1)]):
                    if ws[k + 1][r, j] != 0:
                        vcoef[int(ucol)] = ws[k + 1][r, j]
            big = float(vmax[k][j])
            c1 = {int(u[j]): 1.0, int(d[j]): big}
            for col, val in vcoef.items():
                c1[col] = c1.get(col, 0.0) - val
            add(c1, -np.inf, vconst + big)                                        # u <= v + M (1 - d)
            c2 = {int(u[j]): 1.0, int(d[j]): -big}
            for col, val in vcoef.items():
                c2[col] = c2.get(col, 0.0) - val
            add(c2, vconst - big, np.inf)                                         # u >= v - M (1 - d)
            add({int(u[j]): 1.0, int(d[j]): -big}, -np.inf, 0.0)                 # u <= M d
            add({int(u[j]): 1.0, int(d[j]): big}, 0.0, np.inf)                   # u >= -M d
    a = sp.lil_matrix((len(rows), nvar))
    for r, c in enumerate(rows):
        for col, val in c.items():
            a[r, col] = val
    cons = scipy.optimize.LinearConstraint(a.tocsr(), np.array(lbs), np.array(ubs))
    lb = np.full(nvar, -np.inf)
    ub = np.full(nvar, np.inf)
    lb[:n], ub[:n] = lo, hi
    integrality = np.zeros(nvar)
    for k in range(len(ws) - 1):
        d = idx[("d", k)]
        integrality[d] = 1
        lb[d], ub[d] = 0, 1
        lb[idx[("h", k)]] = 0.0  # h = relu(z) >= 0
    bounds = scipy.optimize.Bounds(lb, ub)
    if len(ws) == 1:
        g_const = ws[0][0]
        return float(np.abs(g_const).sum() if p == "inf" else np.abs(g_const).max())
    u1 = idx[("u", 0)]
    signs = itertools.product((1.0, -1.0), repeat=n) if p == "inf" else [tuple(s * (i == t) for i in range(n))
                                                                        for t in range(n) for s in (1.0, -1.0)]
    best = -np.inf
    for s in signs:
        # s·g = s·(W_1^T u_1) = (W_1 s)·u_1
        cost = np.zeros(nvar)
        cost[u1] = -(ws[0] @ np.array(s))
        res = scipy.optimize.milp(cost, constraints=cons, integrality=integrality, bounds=bounds,
                                  options={"time_limit": time_limit})
        if res.status != 0 or res.x is None:
            raise SolverError(f"milp: HiGHS returned status {res.status} ({res.message})")
        best = max(best, -float(res.fun))
    return best
