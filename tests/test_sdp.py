"""LipSDP (lipverify.sdp): certified values, checker, solver failures, applicability.  Tiny nets only."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from _nets import gaussian_mlp
from hypothesis import example, given, settings
from hypothesis import strategies as st

import lipverify as lv
from lipverify import sdp, zoo
from lipverify.ir.views import linear_chain
from lipverify.sdp import solvers


def random_net(seed: int, sizes=(3, 6, 5, 2), act=lv.ReLU) -> lv.Network:
    return gaussian_mlp(sizes, seed, act)


ACTIVATIONS = [lv.ReLU, lv.Tanh, lv.Sigmoid, lambda: lv.LeakyReLU(0.1), lv.GELU]


def test_linear_network_gives_the_spectral_norm_of_the_product():
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((5, 4)), rng.standard_normal((6, 5)), rng.standard_normal((3, 6))]
    net = lv.Network([lv.Dense(ws[0]), lv.Identity(), lv.Dense(ws[1]), lv.Identity(), lv.Dense(ws[2])])
    true = np.linalg.norm(ws[2] @ ws[1] @ ws[0], 2)
    for variant in ("neuron", "layer"):
        for check in ("exact", "float"):
            b = lv.bound(net, "lipsdp", norm=2, variant=variant, check=check)
            assert b.kind == "upper" and b.method == "lipsdp" and b.norm == "2"
            assert true * (1 - 1e-12) <= b.value <= true * (1 + 1e-6)
            assert b.details["check"] == check


def test_two_dense_layers_in_a_row_are_merged_exactly():
    w1 = [[Fraction(1, 3), Fraction(2, 7)], [Fraction(-1, 5), 1]]
    w2 = [[1, Fraction(1, 3)], [Fraction(2, 3), -1]]
    net = lv.Network([lv.Dense(w1), lv.Dense(w2)])
    prod = np.array(w2, dtype=float) @ np.array(w1, dtype=float)
    b = lv.bound(net, "lipsdp", norm=2, check="exact")
    assert np.linalg.norm(prod, 2) * (1 - 1e-12) <= b.value <= np.linalg.norm(prod, 2) * (1 + 1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_lipsdp_between_sampled_lower_bound_and_kstar(seed):
    net = random_net(seed, act=ACTIVATIONS[seed % len(ACTIVATIONS)])
    b = lv.bound(net, "lipsdp", norm=2)
    ks = lv.bound(net, "kstar", norm=2).value
    lo = lv.lower_bound(net, norm=2, samples=64, steps=20, seed=seed).value
    assert lo <= b.value <= ks * (1 + 1e-9)
    assert b.solver == "IPM" and b.status == "optimal"
    for key in ("margin", "rho_inflation", "solve_seconds", "certify_seconds", "certificate", "check"):
        assert key in b.details
    assert b.details["rho_certified"] >= b.details["rho_schur"]


@pytest.mark.parametrize("act", ACTIVATIONS[:3])
def test_neuron_is_at_most_layer(act):
    net = random_net(7, sizes=(3, 5, 4, 2), act=act)
    neuron = lv.bound(net, "lipsdp", norm=2, variant="neuron")
    layer = lv.bound(net, "lipsdp", norm=2, variant="layer")
    # the layer variant is a restriction of the neuron variant; certification margins are ~1e-7 relative
    assert neuron.value <= layer.value * (1 + 1e-6)
    assert neuron.details["variant"] == "neuron" and layer.details["variant"] == "layer"


def test_one_hidden_layer_known_value():
    # W1 is sqrt(2) times an orthogonal matrix and W2 = I: the constant is exactly sqrt(2)
    net = lv.Network([lv.Dense([[1, 1], [1, -1]]), lv.ReLU(), lv.Dense([[1, 0], [0, 1]])])
    b = lv.bound(net, "lipsdp", norm=2)
    assert np.sqrt(2) <= b.value <= np.sqrt(2) * (1 + 1e-6)


def test_exact_and_float_checks_agree_on_rational_weights():
    net = lv.Network([lv.Dense([[Fraction(1, 3), -1], [Fraction(2, 5), Fraction(1, 7)], [1, 1]]), lv.Tanh(),
                      lv.Dense([[Fraction(1, 9), 1, Fraction(-3, 11)]])])
    assert linear_chain(net).radii[0] is not None  # 1/3 is not a float: the float path must use the radius
    a = lv.bound(net, "lipsdp", norm=2, check="exact")
    b = lv.bound(net, "lipsdp", norm=2, check="float")
    assert a.details["check"] == "exact" and b.details["check"] == "float"
    assert abs(a.value - b.value) <= 1e-5 * a.value
    cert = a.details["certificate"]
    assert sdp.verify(net, cert, method="exact") and sdp.verify(net, cert, method="float")


def test_checker_rejects_perturbed_certificates():
    net = random_net(3, sizes=(3, 5, 4, 2))
    b = lv.bound(net, "lipsdp", norm=2)
    cert = b.details["certificate"]
    assert sdp.verify(net, cert, method="exact") and sdp.verify(net, cert, method="float")
    lower = lv.lower_bound(net, norm=2, samples=64, steps=20).value
    too_small = Fraction(lower) ** 2 * Fraction(999, 1000)  # rho below the true constant: can never be proven
    for method in ("exact", "float"):
        assert not sdp.verify(net, sdp.Certificate(too_small, cert.lambdas), method=method)
        assert not sdp.verify(net, sdp.Certificate(cert.rho * Fraction(99, 100), cert.lambdas), method=method)
        shrunk = tuple(tuple(x / 100 for x in lam) for lam in cert.lambdas)
        assert not sdp.verify(net, sdp.Certificate(cert.rho, shrunk), method=method)
        negative = ((-cert.lambdas[0][0],) + cert.lambdas[0][1:],) + cert.lambdas[1:]
        assert not sdp.verify(net, sdp.Certificate(cert.rho, negative), method=method)
    with pytest.raises(ValueError, match="multipliers of sizes"):
        sdp.verify(net, sdp.Certificate(cert.rho, cert.lambdas[:1]))


def test_certify_refuses_bad_multipliers():
    problem = sdp.problem_from_chain(linear_chain(random_net(4, sizes=(3, 5, 2))))
    # zero multipliers leave -W_L^T W_L as the hidden block: not positive definite, no number
    with pytest.raises(lv.CertificationError, match="not positive definite"):
        sdp.certify(problem, [np.zeros(5)])


def test_solver_iteration_limit_raises_solver_error():
    net = random_net(5, sizes=(3, 5, 4, 2))
    with pytest.raises(lv.SolverError, match="CVXOPT"):
        lv.bound(net, "lipsdp", norm=2, solver="CVXOPT", solver_options={"max_iters": 1})
    with pytest.raises(lv.SolverError, match="SCS"):
        lv.bound(net, "lipsdp", norm=2, solver="SCS", solver_options={"max_iters": 1})


def test_scs_and_clarabel_on_tiny_nets():
    net = random_net(6, sizes=(2, 4, 2))
    ref = lv.bound(net, "lipsdp", norm=2, solver="CVXOPT").value
    for solver in ("SCS", "clarabel"):
        try:
            b = lv.bound(net, "lipsdp", norm=2, solver=solver)
        except lv.CertificationError:
            continue  # a low-accuracy solution may not be provable: an error, never a wrong number
        assert b.solver == solver.upper()
        assert b.value >= ref * (1 - 1e-4)


def test_clarabel_refused_beyond_tiny_sizes():
    net = random_net(0, sizes=(20, 30, 5))
    with pytest.raises(lv.NotApplicableError, match="Clarabel"):
        lv.bound(net, "lipsdp", norm=2, solver="CLARABEL")
    with pytest.raises(ValueError, match="solver must be one of"):
        lv.bound(net, "lipsdp", norm=2, solver="MOSEK")


def test_clarabel_is_a_fallback_only_on_tiny_lmis():
    # the one Clarabel size guard (lipverify.sdp.solvers) used by lipsdp and ksdp
    assert solvers.fallback_order("CVXOPT", solvers.CLARABEL_MAX_SIZE) == ("CVXOPT", "CLARABEL")
    assert solvers.fallback_order("CVXOPT", solvers.CLARABEL_MAX_SIZE + 1) == ("CVXOPT",)
    assert solvers.fallback_order("CLARABEL", 5) == ("CLARABEL",)
    assert solvers.fallback_order("SCS", 1000) == ("SCS",)
    solvers.clarabel_guard("CLARABEL", solvers.CLARABEL_MAX_SIZE, "ksdp")  # allowed: no error
    with pytest.raises(lv.NotApplicableError, match=r"ksdp: Clarabel .* side 41"):
        solvers.clarabel_guard("clarabel", solvers.CLARABEL_MAX_SIZE + 1, "ksdp")


@settings(max_examples=40, deadline=None)
@given(st.fractions(-10, 10, max_denominator=1000), st.fractions(-10, 10, max_denominator=1000),
       st.fractions(Fraction(1, 100), 10, max_denominator=1000), st.fractions(-1, 1, max_denominator=10**6))
def test_kernel_proves_a_shifted_rational_matrix_only_above_its_exact_threshold(a, b, c, offset):
    # [[a + t, b], [b, c]] ≻ 0 (c > 0) iff t > t* = b^2 / c - a, in exact rationals: the kernel's estimate is near
    # t*, and its proof (float enclosure of the rational matrix + verified Cholesky) never succeeds for t <= t*
    from lipverify.sdp.certificate import float_enclosure, prove_shifted, schur_max

    y = np.array([[a, b], [b, c]], dtype=object)
    t_star = b * b / c - a
    est = schur_max(float(a), np.array([float(b)]), np.array([[float(c)]]))
    assert abs(est - float(t_star)) <= 1e-12 * (1 + abs(float(t_star)))
    enc = float_enclosure(y)
    t = float(t_star + offset)
    if Fraction(t) <= t_star:
        assert not prove_shifted(enc, t, 0.0)
    elif Fraction(t) - t_star > Fraction(1, 10**6):
        assert prove_shifted(enc, t, 0.0)
    # the shift rho I: [[a + t + r, b], [b, c + r]] ≻ 0 exactly iff both leading minors are > 0
    r = 0.5
    exact_pd = c + Fraction(r) > 0 and (a + Fraction(t) + Fraction(r)) * (c + Fraction(r)) > b * b
    if not exact_pd:
        assert not prove_shifted(enc, t, r)


def test_certificate_kernel_imports_no_solver():
    # the trusted kernel has no solver code: importing it (and the adapters, which import lazily) loads neither
    # cvxpy nor CVXOPT, in a fresh interpreter
    import subprocess
    import sys

    code = ("import sys, lipverify.sdp.certificate, lipverify.sdp.solvers; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cvxpy', 'cvxopt')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.parametrize("norm", [1, "inf", "l1", "linf"])
def test_other_norms_not_applicable(norm):
    with pytest.raises(lv.NotApplicableError, match="l2"):
        lv.bound(random_net(0), "lipsdp", norm=norm)


def test_size_limit_and_compare():
    big = random_net(0, sizes=(150, 60, 2))
    with pytest.raises(lv.NotApplicableError, match="larger than the default limit.*max_neurons=210"):
        lv.bound(big, "lipsdp", norm=2)
    rows = lv.compare(random_net(1), norms=(2, "inf"), methods=("kstar", "lipsdp"))
    assert rows.value("lipsdp", 2) <= rows.value("kstar", 2)
    assert rows.value("lipsdp", "inf") is None
    skipped = [r for r in rows if r.method == "lipsdp" and r.norm == "inf"][0]
    assert "l2" in skipped.error
    assert "lipsdp" in lv.METHODS


def test_bad_options():
    net = random_net(0)
    with pytest.raises(ValueError, match="variant"):
        lv.bound(net, "lipsdp", norm=2, variant="full")
    with pytest.raises(ValueError, match="check"):
        lv.bound(net, "lipsdp", norm=2, check="maybe")



@pytest.mark.parametrize("variant", ["neuron", "layer"])
def test_structured_cvxopt_matches_cvxpy_formulation(variant):
    problem = sdp.problem_from_chain(linear_chain(random_net(8, sizes=(3, 6, 5, 2), act=lambda: lv.LeakyReLU(0.2))))
    rho, lam = solvers.solve_cvxopt(problem, variant, {})
    prob, rho_var, _ = sdp.formulate(problem, variant)
    prob.solve(solver="CVXOPT")
    assert prob.status == "optimal"
    assert abs(rho - rho_var.value) <= 1e-6 * abs(rho_var.value)
    assert [len(x) for x in lam] == [6, 5]
    if variant == "layer":
        assert all(np.ptp(x) == 0 for x in lam)


def test_degenerate_networks_still_give_valid_bounds():
    zero_last = lv.Network([lv.Dense(np.ones((3, 2))), lv.ReLU(), lv.Dense(np.zeros((1, 3)))])
    assert 0 <= lv.bound(zero_last, "lipsdp", norm=2).value <= 1e-3  # multipliers raised to a floor
    # the constant 2e-400 underflows: the reported float must round up, never to 0
    tiny = lv.Network([lv.Dense(1e-200 * np.ones((2, 2))), lv.ReLU(), lv.Dense(1e-200 * np.ones((1, 2)))])
    assert lv.bound(tiny, "lipsdp", norm=2).value > 0
    huge = lv.Network([lv.Dense(1e150 * np.ones((2, 2))), lv.ReLU(), lv.Dense(1e150 * np.ones((1, 2)))])
    true = 2 * np.sqrt(2) * 1e300  # 1e150 * [1, 1] . relu(1e150 (x1 + x2) [1, 1])
    assert true * (1 - 1e-12) <= lv.bound(huge, "lipsdp", norm=2).value <= true * (1 + 1e-6)


def test_default_solvers_fall_back_and_report_every_failure():
    net = random_net(5, sizes=(3, 5, 4, 2))
    with pytest.raises(lv.SolverError, match="CVXOPT.*SCS"):
        lv.bound(net, "lipsdp", norm=2, solver_options={"max_iters": 1})


def test_every_zoo_network_gets_a_certified_lipsdp_value():
    """Optima on the boundary of the feasible set (|x| = relu(x) + relu(-x)) are certified after inflation."""
    from lipverify.zoo import ZOO

    for name, entry in ZOO.items():
        net = entry.build()
        b = lv.bound(net, "lipsdp", norm=2)
        assert b.kind == "upper", name
        true = entry.constants.get("2")
        if true is not None:
            assert float(b.value) >= float(true) * (1 - 1e-12), name


# --------------------------------------------------------------------------- issue 17: deep, ill-conditioned nets


def _dense_weights(net: lv.Network) -> list[np.ndarray]:
    return [np.array([[float(v) for v in row] for row in np.atleast_2d(np.asarray(layer.weight, dtype=object))])
            for layer in net.layers if isinstance(layer, lv.Dense)]


def independent_lipsdp_neuron(weights: list[np.ndarray], solver: str = "CLARABEL") -> float:
    """LipSDP-Neuron for a ReLU chain (slopes [0, 1]) written out densely as in Fazlyab et al. (2019),
    ``M(rho, T) = [A; B]^T [[0, T], [T, -2T]] [A; B] + diag(-rho I, 0, W_L^T W_L) ⪯ 0`` on the original weights
    (no scaling, no structure): returns ``sqrt(rho*)`` as the solver reports it."""
    import cvxpy as cp
    import scipy.linalg

    hidden = [w.shape[0] for w in weights[:-1]]
    n0, nh = weights[0].shape[1], sum(hidden)
    a = np.hstack([scipy.linalg.block_diag(*weights[:-1]), np.zeros((nh, hidden[-1]))])
    b = np.hstack([np.zeros((nh, n0)), np.eye(nh)])
    rho = cp.Variable()
    lam = cp.Variable(nh, nonneg=True)
    t = cp.diag(lam)
    m = np.vstack([a, b]).T @ cp.bmat([[np.zeros((nh, nh)), t], [t, -2 * t]]) @ np.vstack([a, b])
    e0 = np.zeros((n0 + nh, n0 + nh))
    e0[:n0, :n0] = np.eye(n0)
    out = np.zeros((n0 + nh, n0 + nh))
    out[-hidden[-1]:, -hidden[-1]:] = weights[-1].T @ weights[-1]
    prob = cp.Problem(cp.Minimize(rho), [(m + out - rho * e0 + (m + out - rho * e0).T) / 2 << 0])
    prob.solve(solver=solver)
    assert prob.status == "optimal", prob.status
    return float(np.sqrt(rho.value))


ZOO_TABLE = [  # (name, network, true Lipschitz constant, LipSDP optimum in closed form or None)
    ("sawtooth3", lambda: zoo.sawtooth(3), 8.0, 64.0),
    ("sawtooth4", lambda: zoo.sawtooth(4), 16.0, 256.0),
    ("sawtooth5", lambda: zoo.sawtooth(5), 32.0, 1024.0),
    ("sawtooth6", lambda: zoo.sawtooth(6), 64.0, 4096.0),
    ("yarotsky_square3", lambda: zoo.yarotsky_square(3), 2 - 1 / 8, 15.0),
    ("yarotsky_square5", lambda: zoo.yarotsky_square(5), 2 - 1 / 32, 63.0),
]


@pytest.mark.parametrize("name, build, true, optimum", ZOO_TABLE, ids=[row[0] for row in ZOO_TABLE])
def test_deep_ill_conditioned_zoo_nets_certify_at_the_sdp_optimum(name, build, true, optimum):
    """Issue 17: before the rebalancing and the anchor repair, sawtooth(4) certified 886.81 for an optimum of 256."""
    net = build()
    b = lv.bound(net, "lipsdp", norm=2)
    ref = independent_lipsdp_neuron(_dense_weights(net))
    assert b.kind == "upper" and b.norm == "2" and b.method == "lipsdp" and b.value >= true
    assert abs(ref - optimum) <= 1e-6 * optimum  # the independent solve agrees with the closed form
    assert optimum * (1 - 1e-9) <= b.value <= optimum * (1 + 1e-6)  # a proven value cannot be below the optimum
    d = b.details
    assert d["certified_value"] == b.value and abs(d["relative_loss"] - (b.value / d["solver_value"] - 1)) <= 1e-15
    assert d["relative_loss"] <= 1e-6 and "note" not in d and b.status == "optimal"
    assert sdp.verify(net, d["certificate"], method="exact")


def test_sawtooth7_is_certified_although_the_plain_solvers_fail():
    """Clarabel and CVXOPT on the dense formulation fail on sawtooth(7); lipsdp certifies within 1e-6 of 4^7, the
    optimum the pattern of k <= 6 predicts (a certified value can only be above the optimum: a value below 4^7
    would disprove the pattern, not the certificate)."""
    net = zoo.sawtooth(7)
    b = lv.bound(net, "lipsdp", norm=2)
    assert 4.0**7 * (1 - 1e-9) <= b.value <= 4.0**7 * (1 + 1e-6)
    assert b.details["rebalanced"] and b.details["relative_loss"] <= 1e-6
    assert sdp.verify(net, b.details["certificate"], method="exact")


def test_large_loss_after_repair_is_reported_not_silent():
    # SCS at a loose tolerance (1e-2) on yarotsky_square(3): its point cannot be repaired to within 1e-4 of its value
    net = zoo.yarotsky_square(3)
    b = lv.bound(net, "lipsdp", norm=2, solver="SCS", solver_options={"eps_abs": 1e-2, "eps_rel": 1e-2})
    d = b.details
    assert b.value >= 2 - 1 / 8 and sdp.verify(net, d["certificate"])
    assert d["relative_loss"] > 1e-4  # this case exercises the warning path
    assert "above the solver's" in b.status and f"{d['relative_loss']:.1e}" in b.status
    assert "note" in d and "proven upper bound" in d["note"]


def test_rebalance_is_an_exact_change_of_variables():
    """Per-neuron powers of two N and an output scaling 2^-d (§3): the exact weights are 2^-d-or-1 N^-1 W N, and a
    certificate of the original net maps to one of the rebalanced problem and back."""
    net = zoo.sawtooth(4)
    problem = sdp.problem_from_chain(linear_chain(net))
    rho, lam = solvers.solve_cvxopt(problem, "neuron", {})
    balanced = sdp.rebalance(problem, rho, lam)
    assert balanced is not None and balanced.neuron_exps is not None
    assert any(np.any(n != 0) for n in balanced.neuron_exps)
    d = balanced.shifts[-1] - problem.shifts[-1]
    assert balanced.shifts[:-1] == problem.shifts[:-1]
    exps = [np.zeros(problem.sizes[0], dtype=int)] + list(balanced.neuron_exps)
    for k in range(problem.depth):
        rows = exps[k + 1] if k + 1 < problem.depth else np.full(problem.weights[k].shape[0], d)
        for (i, j), x in np.ndenumerate(problem.exact[k]):
            assert balanced.exact[k][i, j] == x * Fraction(2) ** int(exps[k][j] - rows[i])
            assert Fraction(float(balanced.weights[k][i, j])) == balanced.exact[k][i, j]
    original = lv.bound(net, "lipsdp", norm=2).details["certificate"]  # stated for the original weights
    per_layer = original.scaled(balanced.shifts)
    mapped = sdp.Certificate(per_layer.rho, tuple(tuple(x * Fraction(4) ** int(n) for x, n in zip(lam_l, n_l))
                                                  for lam_l, n_l in zip(per_layer.lambdas, balanced.neuron_exps)))
    assert balanced.original_certificate(mapped) == original
    assert sdp.check_certificate(balanced, mapped, method="exact")
    too_small = sdp.Certificate(mapped.rho * Fraction(999, 1000), mapped.lambdas)
    assert not sdp.check_certificate(balanced, too_small, method="exact")
    assert sdp.rebalance(balanced, 1.0, [np.ones(3)] * 3) is None  # already balanced: nothing to do


def test_anchor_mixing_repairs_a_point_on_the_boundary():
    """hat = sawtooth(1): the optimum lambda = (16, 32, 16), rho = 16 has a singular hidden block (w^T L^-1 w = 1
    with w = (2, -4, 2)); a slightly infeasible point is certified alone only 2e-4 above, the mixture within
    1e-5 (§5)."""
    problem = sdp.problem_from_chain(linear_chain(zoo.sawtooth(1)))
    scale = Fraction(4) ** (sum(problem.shifts) - problem.shifts[0])  # lambda' = lambda / 4^(E_L - E_1)
    infeasible = [np.array([16.0, 32.0, 16.0]) * (1 - 1e-6) / float(scale)]
    alone = sdp.certify(problem, infeasible)  # only the coarse inflations (1 + 2^-12) reach the feasible side
    assert float(alone.certificate.unscaled(problem.shifts).rho) > 16 * (1 + 1e-4) and alone.mix is None
    anchor = [np.array([17.0, 34.0, 17.0]) / float(scale)]  # strictly feasible: w^T L^-1 w = 16/17
    got = sdp.certify(problem, infeasible, anchor=anchor)
    rho = float(got.certificate.unscaled(problem.shifts).rho)
    assert 16 <= rho <= 16 * (1 + 1e-5) and 0 < got.mix < 1
    assert sdp.check_certificate(problem, got.certificate, method="exact")


@settings(max_examples=8)
@given(seed=st.integers(0, 2**32 - 1), depth=st.integers(3, 6),
       exponents=st.lists(st.floats(-2, 2), min_size=6, max_size=6))
def test_random_deep_nets_with_wide_layer_scales_match_an_independent_solve(seed, depth, exponents):
    """Per-layer weight scales between 1e-2 and 1e2 (issue 17): the certified value equals the independent
    solve on the unscaled weights times the product of the scales (LipSDP is homogeneous in every layer)."""
    rng = np.random.default_rng(seed)
    sizes = [2] + [int(x) for x in rng.integers(2, 5, size=depth - 1)] + [1]
    base = [rng.standard_normal((sizes[i + 1], sizes[i])) / np.sqrt(sizes[i]) for i in range(len(sizes) - 1)]
    scales = 10.0 ** np.array(exponents[:len(base)])
    layers = []
    for i, (w, s) in enumerate(zip(base, scales)):
        layers.append(lv.Dense(w * s))
        if i < len(base) - 1:
            layers.append(lv.ReLU())
    net = lv.Network(layers)
    ref = independent_lipsdp_neuron(base) * float(np.prod(scales))
    b = lv.bound(net, "lipsdp", norm=2)
    assert abs(b.value / ref - 1) <= 2e-6, (b.value, ref)
    assert b.details["relative_loss"] <= 1e-6


def scrambled_sawtooth(k: int, exponents) -> lv.Network:
    """sawtooth(k) with hidden neuron i of every layer scaled by s_i = 10**e_i (row of W_l and bias times s_i,
    column of W_{l+1} divided by it): the same function (ReLU is positively homogeneous) and, by the
    congruence of proofs/lipsdp.md §3 with N = diag(s), the same LipSDP-Neuron optimum 4^k."""
    dense = [layer for layer in zoo.sawtooth(k).layers if isinstance(layer, lv.Dense)]
    ws = _dense_weights(zoo.sawtooth(k))
    bs = [np.array([float(v) for v in np.ravel(np.asarray(layer.bias, dtype=object))]) for layer in dense]
    for i in range(len(ws) - 1):
        s = 10.0 ** np.array(exponents[3 * i:3 * i + 3])
        ws[i], bs[i], ws[i + 1] = ws[i] * s[:, None], bs[i] * s, ws[i + 1] / s[None, :]
    layers = []
    for i, (w, b) in enumerate(zip(ws, bs)):
        layers += [lv.Dense(w, b)] + ([lv.ReLU()] if i < len(ws) - 1 else [])
    return lv.Network(layers)


@settings(max_examples=10)
@given(k=st.integers(2, 5), exponents=st.lists(st.floats(-2, 2), min_size=15, max_size=15))
@example(k=5, exponents=[0.0, 1.15625, 0.0, 0.0, -0.73828125, -0.5, -1.15625, 0.0, 1.955078125, 0.0, 0.5, 0.0, 0.75,
                         -1.75, 0.99609375])  # found by random search: certifies 4^5 (1 + 1.15e-6)
def test_sawtooth_with_rescaled_neurons_still_certifies_at_4_to_the_k(k, exponents):
    """Per-neuron scales between 1e-2 and 1e2 inside one layer: no per-layer scaling can balance them (before
    the per-neuron rebalancing, sawtooth(4) certified ~1e5 instead of 256).  The certified value stays within 1e-5
    of the optimum 4^k (issue 17 asks for 1e-4 in tests; most draws are within 1e-7, the worst seen 1.15e-6)."""
    net = scrambled_sawtooth(k, exponents)
    b = lv.bound(net, "lipsdp", norm=2)
    assert 2.0**k <= b.value <= 4.0**k * (1 + 1e-5)
    assert b.value >= 4.0**k * (1 - 1e-9)  # float weights: the optimum moves by ~1e-16 relative
    assert sdp.verify(net, b.details["certificate"], method="exact")


@pytest.mark.parametrize("variant", ["neuron", "layer"])
def test_margin_on_the_hidden_blocks_is_the_same_in_both_formulations(variant):
    """The anchor solve (§5): H - eps E_hidden ⪰ 0 in the structured CVXOPT operators and in the cvxpy model."""
    problem = sdp.problem_from_chain(linear_chain(random_net(9, sizes=(3, 5, 4, 2))))
    rho0, _ = solvers.solve_cvxopt(problem, variant, {})
    rho, lam = solvers.solve_cvxopt(problem, variant, {}, 1e-2)
    prob, rho_var, _ = sdp.formulate(problem, variant, 1e-2)
    prob.solve(solver="CVXOPT")
    assert abs(rho - rho_var.value) <= 1e-6 * abs(rho_var.value) and rho > rho0 * (1 + 1e-6)
    diag, lower = sdp.lmi_blocks(problem, lam, rho)
    h = sdp.assemble(diag, lower)
    n0 = problem.sizes[0]
    assert np.linalg.eigvalsh(h[n0:, n0:]).min() >= 1e-2 * (1 - 1e-4)  # the hidden block keeps its margin


def test_float_check_and_layer_variant_on_the_deep_sawtooth():
    net = zoo.sawtooth(5)
    b = lv.bound(net, "lipsdp", norm=2, check="float")
    assert b.details["check"] == "float" and 1024 * (1 - 1e-9) <= b.value <= 1024 * (1 + 1e-6)
    layer = lv.bound(net, "lipsdp", norm=2, variant="layer")
    assert layer.value >= b.value * (1 - 1e-9) and layer.details["relative_loss"] <= 1e-6
    assert all(len(set(lam)) == 1 for lam in layer.details["certificate"].lambdas)  # still one multiplier per layer
    assert sdp.verify(net, layer.details["certificate"], method="exact")
