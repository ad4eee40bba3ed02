"""LSSD: the chunked implementation against a naive full-logits reference written independently here."""

import pytest
import torch

from mixcpt_core.losses import (
    CachedTeacher,
    OnlineTeacher,
    chunked_lssd,
    supervised_rows,
    swap_explained,
    swap_top1_with_label,
    teacher_topk_stats,
)


def naive_lssd(hidden, weight, labels, teacher_logits, lam, tau, swap):
    """Reference: full [B, T, V] logits, an explicit per-position swap, softmax, forward KL, token mean."""
    logits = hidden @ weight.T
    s, y, z = logits[:, :-1], labels[:, 1:], teacher_logits[:, :-1]
    ce_terms, kl_terms = [], []
    for b in range(s.shape[0]):
        for t in range(s.shape[1]):
            if y[b, t] == -100:
                continue
            zt = z[b, t].clone()
            if swap:
                k, lab = int(zt.argmax()), int(y[b, t])
                zt[k], zt[lab] = z[b, t, lab], z[b, t, k]
            q = torch.softmax(zt / tau, -1)
            log_p = torch.log_softmax(s[b, t] / tau, -1)
            kl_terms.append((q * (torch.log(q) - log_p)).sum())
            ce_terms.append(-torch.log_softmax(s[b, t], -1)[y[b, t]])
    ce, kl = torch.stack(ce_terms).mean(), torch.stack(kl_terms).mean()
    return (1 - lam) * ce + lam * kl, ce, kl


def _problem(seed=0, B=2, T=9, H=8, V=23, teacher_agrees_at=(), ignore_at=()):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    weight = torch.randn(V, H, generator=g, dtype=torch.float64) * 0.5
    labels = torch.randint(0, V, (B, T), generator=g)
    t_hidden = torch.randn(B, T, H, generator=g, dtype=torch.float64)
    t_weight = torch.randn(V, H, generator=g, dtype=torch.float64)
    for b, t in ignore_at:
        labels[b, t] = -100
    t_logits = t_hidden @ t_weight.T
    for b, t in teacher_agrees_at:  # make the teacher's top-1 equal the label at (b, t): the swap is a no-op there
        labels[b, t + 1] = int(t_logits[b, t].argmax())
    return hidden, weight, labels, t_hidden, t_weight, t_logits


def _chunked(hidden, weight, labels, t_hidden, t_weight, lam, tau, swap, chunk_size, teacher="online", k=None):
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype)
    head.weight = torch.nn.Parameter(weight)
    h, y, rows = supervised_rows(hidden, labels)
    t_rows = t_hidden[:, :-1].reshape(-1, t_hidden.shape[-1])[rows]
    t_head = torch.nn.Linear(t_weight.shape[1], t_weight.shape[0], bias=False, dtype=weight.dtype)
    t_head.weight = torch.nn.Parameter(t_weight, requires_grad=False)
    if teacher == "online":
        target = OnlineTeacher(t_rows, t_head)
    else:
        with torch.no_grad():
            target = CachedTeacher(teacher_topk_stats(t_head(t_rows), y, k=k, tau=tau), tau=tau)
    return chunked_lssd(h, head, y, target, lam=lam, tau=tau, swap=swap, chunk_size=chunk_size), head


CASES = [  # lam, tau, swap
    (0.5, 1.0, True), (1.0, 1.0, True), (0.0, 1.0, True), (0.3, 2.0, True), (0.7, 0.5, False), (1.0, 3.0, False)]


@pytest.mark.parametrize("lam, tau, swap", CASES)
def test_chunked_matches_naive_loss_and_gradients(lam, tau, swap):
    hidden, weight, labels, t_hidden, t_weight, t_logits = _problem(
        teacher_agrees_at=[(0, 1), (1, 4)], ignore_at=[(0, 3), (1, 8), (1, 0)])
    hidden.requires_grad_(True)
    weight_ref = weight.clone().requires_grad_(True)
    ref, ref_ce, ref_kl = naive_lssd(hidden, weight_ref, labels, t_logits, lam, tau, swap)
    g_h_ref, g_w_ref = torch.autograd.grad(ref, (hidden, weight_ref))

    hidden2 = hidden.detach().clone().requires_grad_(True)
    out, head = _chunked(hidden2, weight.clone(), labels, t_hidden, t_weight, lam, tau, swap, chunk_size=4)
    out.loss.backward()
    assert out.n_tokens == 2 * 8 - 2  # 16 shifted positions, 2 of them ignored (labels at t=0 are never targets)
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.ce, ref_ce.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(out.lssd, ref_kl.detach(), rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(hidden2.grad, g_h_ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(head.weight.grad, g_w_ref, rtol=1e-9, atol=1e-12)


def test_fp32_matches_reference_tightly():
    hidden, weight, labels, t_hidden, t_weight, t_logits = _problem(seed=3, V=50, ignore_at=[(0, 2)])
    ref = naive_lssd(hidden, weight, labels, t_logits, 0.5, 2.0, True)[0]
    out, _ = _chunked(hidden.float(), weight.float(), labels, t_hidden.float(), t_weight.float(), 0.5, 2.0, True, 5)
    torch.testing.assert_close(out.loss.double(), ref, rtol=1e-5, atol=1e-6)


def test_chunk_size_does_not_change_the_result():
    p = _problem(seed=1)
    a = _chunked(*p[:5], 0.5, 1.0, True, chunk_size=1)[0].loss
    b = _chunked(*p[:5], 0.5, 1.0, True, chunk_size=1000)[0].loss
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_chunk_rows_from_the_memory_budget():
    from mixcpt_core.losses import chunk_rows

    online = OnlineTeacher(torch.zeros(1, 1), None)
    cached = CachedTeacher({"lse": torch.zeros(1)}, 1.0)
    # 1 MiB over [rows, 1000] fp32 buffers: student + teacher logits + their difference = 12,000 bytes a row
    assert chunk_rows(1000, 1.0, online) == 1048576 // 12000 == 87
    assert chunk_rows(1000, 1.0, online, tau=2.0) == 1048576 // 16000  # + softmax(s / tau)
    assert chunk_rows(1000, 1.0, cached) == 1048576 // 8000  # student + dense target
    assert chunk_rows(1000, 1.0, None) == 1048576 // 4000  # CE only
    assert chunk_rows(10**9, 1.0, online) == 1  # never zero rows
    assert chunk_rows(151936, 256.0, online) == 147  # the GPU configs' chunk at Qwen2.5's vocabulary


def test_default_chunk_comes_from_the_budget_and_gives_the_same_loss():
    import mixcpt_core.losses as L

    p = _problem(V=23)
    head = torch.nn.Linear(8, 23, bias=False, dtype=torch.float64)
    head.weight = torch.nn.Parameter(p[1])
    h, y, rows = supervised_rows(p[0], p[2])
    target = OnlineTeacher(p[3][:, :-1].reshape(-1, 8)[rows], head)
    budget = 3 * 3 * 23 * 8 / 2**20  # exactly 3 rows of three float64 buffers (a float64 model keeps float64)
    seen = []
    real = L._ChunkedHeadLoss.apply
    with pytest.MonkeyPatch.context() as m:
        m.setattr(L._ChunkedHeadLoss, "apply", lambda *a: seen.append(a[8]) or real(*a))
        by_budget = chunked_lssd(h, head, y, target, lam=0.5, chunk_mb=budget).loss
        by_default = chunked_lssd(h, head, y, target, lam=0.5).loss
    assert seen == [3, L.chunk_rows(23, L.DEFAULT_CHUNK_MB, target, itemsize=8)]
    assert by_budget == chunked_lssd(h, head, y, target, lam=0.5, chunk_size=3).loss  # the same chunks, bit for bit
    assert by_default.item() == pytest.approx(by_budget.item(), rel=1e-12)
    with pytest.raises(ValueError, match="chunk_size must be >= 1, got 0"):
        chunked_lssd(h, head, y, target, lam=0.5, chunk_size=0)


def test_swap_is_a_noop_where_the_teacher_already_predicts_the_label():
    z = torch.tensor([[0.1, 3.0, -1.0], [2.0, 0.5, 1.0]])
    torch.testing.assert_close(swap_top1_with_label(z, torch.tensor([1, 0])), z)
    torch.testing.assert_close(swap_top1_with_label(z, torch.tensor([2, 1])), torch.tensor([[0.1, -1.0, 3.0], [0.5, 2.0, 1.0]]))


def test_num_items_normalisation_makes_accumulation_exact():
    """Two micro-batches normalised by the total count sum to the loss of the concatenated batch."""
    hidden, weight, labels, t_hidden, t_weight, _ = _problem(seed=2, B=4, ignore_at=[(0, 3), (2, 5), (2, 6)])
    full = _chunked(hidden, weight, labels, t_hidden, t_weight, 0.5, 1.0, True, 7)[0]
    total = full.n_tokens
    parts = []
    for sl in (slice(0, 1), slice(1, 4)):  # unequal micro-batches with unequal token counts
        h, y, rows = supervised_rows(hidden[sl], labels[sl])
        head = torch.nn.Linear(8, 23, bias=False, dtype=torch.float64)
        head.weight = torch.nn.Parameter(weight)
        t_head = torch.nn.Linear(8, 23, bias=False, dtype=torch.float64)
        t_head.weight = torch.nn.Parameter(t_weight)
        teacher = OnlineTeacher(t_hidden[sl][:, :-1].reshape(-1, 8)[rows], t_head)
        parts.append(chunked_lssd(h, head, y, teacher, lam=0.5, num_items=total).loss)
    torch.testing.assert_close(sum(parts), full.loss, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_cached_teacher_is_exact_when_k_covers_the_vocabulary(tau):
    p = _problem(seed=4, ignore_at=[(1, 2)], teacher_agrees_at=[(0, 5)])
    exact = _chunked(*p[:5], 0.6, tau, True, 4)[0]
    cached = _chunked(*p[:5], 0.6, tau, True, 4, teacher="cached", k=23)[0]
    torch.testing.assert_close(cached.loss, exact.loss, rtol=1e-10, atol=1e-12)


def test_cached_teacher_with_small_k_is_a_lower_bound_that_tightens_with_k():
    p = _problem(seed=5, V=40)
    exact = _chunked(*p[:5], 1.0, 1.0, True, 8)[0].lssd
    approx = [_chunked(*p[:5], 1.0, 1.0, True, 8, teacher="cached", k=k)[0].lssd for k in (1, 4, 16, 39)]
    assert all(a <= exact + 1e-12 for a in approx)
    assert all(x <= y + 1e-12 for x, y in zip(approx, approx[1:]))


def test_bad_parameters():
    p = _problem()
    with pytest.raises(ValueError, match="lambda must be in"):
        _chunked(*p[:5], 1.5, 1.0, True, 4)
    with pytest.raises(ValueError, match="tau must be > 0"):
        _chunked(*p[:5], 0.5, 0.0, True, 4)


def _head(weight):
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype)
    head.weight = torch.nn.Parameter(weight)
    return head


@pytest.mark.parametrize("V", [23, 300])  # below 100 -100 used to raise IndexError, above it gave a wrong loss
def test_labels_with_ignore_index_are_refused(V):
    hidden, weight, labels, *_ = _problem(V=V, ignore_at=[(0, 3)])
    h = hidden[:, :-1].reshape(-1, hidden.shape[-1])
    y = labels[:, 1:].reshape(-1)  # shifted, but the -100 rows not dropped: supervised_rows skipped
    assert (y == -100).sum() == 1
    with pytest.raises(ValueError, match=r"labels contain -100 \(ignored positions\): .*supervised_rows"):
        chunked_lssd(h, _head(weight), y, None, lam=0.0)
    h2, y2, _ = supervised_rows(hidden, labels)  # the right way: one row fewer, and accepted
    assert len(y2) == len(y) - 1
    chunked_lssd(h2, _head(weight), y2, None, lam=0.0)


def test_bad_shapes_and_label_ranges_are_refused():
    hidden, weight, labels, t_hidden, t_weight, _ = _problem(V=23)
    h, y, rows = supervised_rows(hidden, labels)
    head = _head(weight)
    cases = [
        ((hidden, head, y, None), r"hidden must be \[N, H\].*got shape \(2, 9, 8\)"),
        ((h, head, y[:-1], None), r"labels must be \[N\] with N = 16 .*got shape \(15,\)"),
        ((h, head, y.double(), None), "labels must be integer token ids, got dtype torch.float64"),
        ((h[:, :4], head, y, None), r"the head's weight must be \[V, H\] with H = 4"),
        ((h, head, torch.full_like(y, 23), None), r"labels must be token ids in \[0, 23\).*from 23 to 23"),
        ((h, head, torch.full_like(y, -1), None), r"labels must be token ids in \[0, 23\).*from -1 to -1"),
        ((h, head, y, OnlineTeacher(t_hidden[0], head)), "the teacher target has 9 rows, the student 16"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            chunked_lssd(*args, lam=0.5 if args[3] is not None else 0.0)


def naive_coarse_kl(student_logits, teacher_logits, labels, k, tau, swap):
    """Reference for the cached teacher: swap on full logits, then merge every token outside top-k ∪ {label}."""
    total = 0.0
    for s, z, y in zip(student_logits, teacher_logits, labels):
        zt = z.clone()
        if swap:
            t = int(z.argmax())
            zt[t], zt[y] = z[y], z[t]
        known = set(z.topk(k).indices.tolist()) | {int(y)}
        mask = torch.zeros_like(z, dtype=torch.bool)
        mask[list(known)] = True
        q, p = torch.softmax(zt / tau, -1), torch.softmax(s / tau, -1)
        qk, pk = q[mask], p[mask]
        qr, pr = 1 - qk.sum(), 1 - pk.sum()
        total = total + (qk * (qk.log() - pk.log())).sum() + (qr * (qr.log() - pr.log()) if qr > 0 else 0.0)
    return total


@pytest.mark.parametrize("k, tau, swap", [(3, 1.0, True), (5, 2.0, True), (2, 1.0, False)])
def test_cached_teacher_loss_and_gradient_match_the_coarse_grained_reference(k, tau, swap):
    hidden, weight, labels, t_hidden, t_weight, _ = _problem(seed=6, V=17, teacher_agrees_at=[(0, 2)])
    h, y, rows = supervised_rows(hidden, labels)
    h = h.clone().requires_grad_(True)
    t_logits = t_hidden[:, :-1].reshape(-1, 8)[rows] @ t_weight.T
    ref = naive_coarse_kl(h @ weight.T, t_logits, y, k, tau, swap) / len(y)
    (g_ref,) = torch.autograd.grad(ref, h)
    head = torch.nn.Linear(8, 17, bias=False, dtype=torch.float64)
    head.weight = torch.nn.Parameter(weight.clone(), requires_grad=False)
    teacher = CachedTeacher(teacher_topk_stats(t_logits, y, k=k, tau=tau), tau=tau)
    h2 = h.detach().clone().requires_grad_(True)
    out = chunked_lssd(h2, head, y, teacher, lam=1.0, tau=tau, swap=swap, chunk_size=3)
    out.loss.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h2.grad, g_ref, rtol=1e-8, atol=1e-10)


def _trainable_head(weight, bias=None):
    head = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype)
    head.weight = torch.nn.Parameter(weight.clone())
    if bias is not None:
        head.bias = torch.nn.Parameter(bias.clone())
    return head


@pytest.mark.parametrize("bias", [False, True], ids=["no-bias", "bias"])
@pytest.mark.parametrize("k, tau, swap", [(3, 1.0, True), (5, 2.0, False)])
def test_cached_teacher_gradient_of_a_trainable_head_matches_the_coarse_grained_reference(k, tau, swap, bias):
    """The test above freezes the head: here it trains, with and without a bias, and lambda < 1 (CE's share is in
    every gradient too). Loss and the gradients of the hidden states, the head's weight and its bias against
    :func:`naive_coarse_kl` plus a CE written out (full logits h W^T + b)."""
    hidden, weight, labels, t_hidden, t_weight, _ = _problem(seed=7, V=17, teacher_agrees_at=[(1, 3)],
                                                             ignore_at=[(0, 4)])
    h, y, rows = supervised_rows(hidden, labels)
    t_logits = t_hidden[:, :-1].reshape(-1, 8)[rows] @ t_weight.T
    b = torch.randn(17, generator=torch.Generator().manual_seed(8), dtype=torch.float64) if bias else None
    lam = 0.6
    leaves = [h.clone().requires_grad_(True), weight.clone().requires_grad_(True)]
    if bias:
        leaves.append(b.clone().requires_grad_(True))
    s = leaves[0] @ leaves[1].T + (leaves[2] if bias else 0.0)
    ce = -torch.log_softmax(s, -1)[torch.arange(len(y)), y].mean()
    ref = (1 - lam) * ce + lam * naive_coarse_kl(s, t_logits, y, k, tau, swap) / len(y)
    grads_ref = torch.autograd.grad(ref, leaves)

    head = _trainable_head(weight, b)
    teacher = CachedTeacher(teacher_topk_stats(t_logits, y, k=k, tau=tau), tau=tau)
    h2 = h.detach().clone().requires_grad_(True)
    out = chunked_lssd(h2, head, y, teacher, lam=lam, tau=tau, swap=swap, chunk_size=3)
    out.loss.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h2.grad, grads_ref[0], rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(head.weight.grad, grads_ref[1], rtol=1e-8, atol=1e-10)
    if bias:
        torch.testing.assert_close(head.bias.grad, grads_ref[2], rtol=1e-8, atol=1e-10)


def test_online_teacher_with_a_biased_head_matches_the_naive_reference():
    """An LM head with a bias (student and teacher): loss and every gradient against :func:`naive_lssd` on
    logits h W^T + b, the bias added by hand to both sides' full logits."""
    hidden, weight, labels, t_hidden, t_weight, _ = _problem(seed=9, teacher_agrees_at=[(0, 2)], ignore_at=[(1, 5)])
    g = torch.Generator().manual_seed(10)
    b, t_b = (torch.randn(23, generator=g, dtype=torch.float64) for _ in range(2))
    lam, tau = 0.4, 2.0
    hidden_ref, w_ref, b_ref = (x.clone().requires_grad_(True) for x in (hidden, weight, b))
    # naive_lssd computes hidden @ weight.T: the bias rides along as a constant-1 feature of the hidden states
    ones = torch.ones(*hidden.shape[:2], 1, dtype=torch.float64)
    ref = naive_lssd(torch.cat([hidden_ref, ones], -1), torch.cat([w_ref, b_ref[:, None]], -1), labels,
                     t_hidden @ t_weight.T + t_b, lam, tau, True)[0]
    g_ref = torch.autograd.grad(ref, (hidden_ref, w_ref, b_ref))

    head = _trainable_head(weight, b)
    t_head = torch.nn.Linear(8, 23, dtype=torch.float64).requires_grad_(False)
    t_head.weight.copy_(t_weight)
    t_head.bias.copy_(t_b)
    h, y, rows = supervised_rows(hidden.clone().requires_grad_(True), labels)
    h.retain_grad()
    out = chunked_lssd(h, head, y, OnlineTeacher(t_hidden[:, :-1].reshape(-1, 8)[rows], t_head), lam=lam, tau=tau,
                       chunk_size=4)
    out.loss.backward()
    torch.testing.assert_close(out.loss, ref, rtol=1e-10, atol=1e-12)
    g_h = torch.zeros_like(hidden[:, :-1]).reshape(-1, 8).index_copy(0, rows, h.grad)
    torch.testing.assert_close(g_h.reshape(2, 8, 8), g_ref[0][:, :-1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(head.weight.grad, g_ref[1], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(head.bias.grad, g_ref[2], rtol=1e-9, atol=1e-12)


def test_swap_explained_moves_the_top1_mass_onto_the_label():
    z = torch.tensor([0.0, 3.0, 1.0, -2.0])
    v = swap_explained(z, label=2, top=2)
    assert v["teacher_top1"] == 1 and v["token_ids"] == [1, 2]
    p = torch.softmax(z.double(), -1)
    assert v["teacher"] == pytest.approx([p[1].item(), p[2].item()])
    assert v["swapped"] == pytest.approx([p[2].item(), p[1].item()])  # exchanged, nothing else changes
    assert swap_explained(z, label=3, top=1)["token_ids"] == [1, 3]  # the label is always shown


def test_cached_target_is_a_distribution_even_when_the_student_tail_is_below_fp32_resolution():
    """Regression: the tail mass was 1 - sum(known); when a trained student puts nearly all its mass on the known
    tokens that cancels to rounding noise, the tail target blew up, and the gradient's cosine to the exact one fell
    to 0.12 (k=256, tiny model after stage 1). The target q~ must sum to 1 with the teacher's rest mass in the tail."""
    from mixcpt_core.losses import _softmax_

    g = torch.Generator().manual_seed(0)
    n, V, k = 16, 1259, 256
    z = torch.randn(n, V, generator=g)  # a flat-ish teacher: its tail keeps real mass
    y = torch.randint(0, V, (n,), generator=g)
    stats = teacher_topk_stats(z, y, k=k)
    s = torch.zeros(n, V)
    s.scatter_(1, stats["topk_ids"], 25.0)  # the student: almost all mass on the teacher's top-k
    s[torch.arange(n), y] = 25.0
    teacher = CachedTeacher(stats, 1.0)
    teacher.begin(s, slice(0, n), y, 1.0, True)
    p = s.clone()
    lse = _softmax_(p)
    _, q = teacher.finish(p, lse)
    torch.testing.assert_close(q.sum(1), torch.ones(n), rtol=0, atol=1e-4)
    known = torch.zeros(n, V, dtype=torch.bool).scatter_(1, stats["topk_ids"], True)
    known[torch.arange(n), y] = True
    q_rest_true = torch.softmax(swap_top1_with_label(z, y), -1).masked_fill(known, 0).sum(1)
    torch.testing.assert_close(q.masked_fill(known, 0).sum(1), q_rest_true, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("teacher", ["online", "cached"])
def test_bf16_autocast_does_not_lower_the_precision_of_the_statistics(teacher):
    """Under the Trainer's bf16 autocast the statistics still compute in float32 (the CPU has autocast too): with
    float32 head products the loss is the one computed without autocast."""
    g = torch.Generator().manual_seed(0)
    n, h_dim, v = 64, 32, 500
    h, th = torch.randn(n, h_dim, generator=g), 2 * torch.randn(n, h_dim, generator=g)
    y = torch.randint(0, v, (n,), generator=g)
    head, t_head = torch.nn.Linear(h_dim, v, bias=False), torch.nn.Linear(h_dim, v, bias=False)

    def target():
        if teacher == "online":
            return OnlineTeacher(th, t_head)
        with torch.no_grad():
            return CachedTeacher(teacher_topk_stats(t_head(th), y, k=16), 1.0)

    plain = chunked_lssd(h, head, y, target(), lam=0.5)
    t = target()  # outside: cached statistics are computed before training, not under its autocast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = chunked_lssd(h, head, y, t, lam=0.5, matmul_dtype=torch.float32)
    assert auto.lssd.item() == pytest.approx(plain.lssd.item(), rel=1e-6)  # 3e-4 off before autocast was disabled
    assert auto.loss.item() == pytest.approx(plain.loss.item(), rel=1e-6)


def test_head_products_follow_autocast_in_bf16_with_float32_statistics():
    """Under bf16 autocast the four head products take bf16 inputs (float32 accumulation, bf16 results, as
    torch.mm gives them); everything after the products is float32. Reference: the naive loss in float64 on
    those bf16 products."""
    g = torch.Generator().manual_seed(0)
    n, h_dim, v, bf = 64, 32, 500, torch.bfloat16
    h, th = torch.randn(n, h_dim, generator=g), 2 * torch.randn(n, h_dim, generator=g)
    y = torch.randint(0, v, (n,), generator=g)
    torch.manual_seed(0)
    head, t_head = torch.nn.Linear(h_dim, v, bias=False), torch.nn.Linear(h_dim, v, bias=False)
    w = head.weight.detach()
    s_ref = (h.to(bf) @ w.to(bf).T).double().requires_grad_(True)  # the products as torch computes them
    z_ref = (th.to(bf) @ t_head.weight.detach().to(bf).T).double()
    pad = torch.zeros(1, v, dtype=torch.float64)  # naive_lssd shifts: a last row that predicts nothing
    labels = torch.cat([torch.zeros(1, dtype=y.dtype), y])[None]
    ref = naive_lssd(torch.cat([s_ref, pad])[None], torch.eye(v, dtype=torch.float64), labels,
                     torch.cat([z_ref, pad])[None], 0.5, 1.0, True)[0]
    g_s = torch.autograd.grad(ref, s_ref)[0]  # d loss / d logits, float64

    def run(matmul_dtype=None, autocast=False):
        hh = h.clone().requires_grad_(True)
        head.weight.grad = None
        with torch.autocast("cpu", dtype=bf, enabled=autocast):
            out = chunked_lssd(hh, head, y, OnlineTeacher(th, t_head), lam=0.5, chunk_size=16,
                               matmul_dtype=matmul_dtype)
        out.loss.backward()
        return out.loss.item(), hh.grad, head.weight.grad.clone()

    auto, explicit, exact = run(autocast=True), run(matmul_dtype=bf), run()
    assert auto[0] == explicit[0]  # the default under autocast is bf16
    assert auto[0] == pytest.approx(ref.item(), rel=1e-6)  # measured 4e-8
    assert abs(exact[0] - ref.item()) > 1e-5 * abs(ref.item())  # float32 products: another computation (1.1e-4)
    # gradients: the logits' gradient is rounded to bf16 before its two products (as autocast's backward does), and
    # each chunk's products come out in bf16; the head's gradient sums its 4 chunks in float32
    g_bf, h_bf = g_s.to(bf), h.to(bf)
    grad_h_ref = (g_bf.double() @ w.to(bf).double()).to(bf).double()
    grad_w_ref = sum((g_bf[c:c + 16].T.double() @ h_bf[c:c + 16].double()).to(bf).double() for c in range(0, n, 16))
    torch.testing.assert_close(auto[1].double(), grad_h_ref, rtol=1e-2, atol=1e-6)
    torch.testing.assert_close(auto[2].double(), grad_w_ref, rtol=1e-2, atol=1e-6)
