"""Logit-swap self-distillation (LSSD), as this project defines it (docs/method.md), computed in chunks.

At every supervised position t (label y_t != -100), with teacher logits z_t (the frozen original model):

* k_t = argmax_v z_t[v]                          the teacher's top-1 token
* z~_t = z_t with entries k_t and y_t swapped     (no-op when k_t == y_t)
* q_t = softmax(z~_t / tau),  p_t = softmax(s_t / tau)      (s_t: student logits)
* L_LSSD = (1 / N) * sum_t KL(q_t || p_t)         forward KL, token mean over the N supervised positions
* L = (1 - lambda) * CE + lambda * L_LSSD          CE at temperature 1, same token mean

After the swap the label is the teacher's most likely token while every other token keeps the teacher's logit
("dark knowledge"): the smallest change to the teacher that still teaches the label. ``swap=False`` gives plain
self-distillation toward the unswapped teacher. No tau^2 factor is applied (the project's definition).

**Memory.** A [batch, seq, vocab] float tensor per model dominates memory at real vocabularies (128k-152k), so
nothing here materialises one. :func:`chunked_lssd` takes final hidden states and the LM head and works through
the supervised positions a chunk at a time. Each chunk's logits exist only inside that chunk: the gradients with
respect to the hidden states and the head weight are computed there and then (as Liger-Kernel's fused linear
losses do), so backward has nothing to recompute and peak extra memory is O(chunk_size * vocab). By default the
chunk size comes from a memory budget (:data:`DEFAULT_CHUNK_MB` of [chunk, vocab] buffers, :func:`chunk_rows`), so
the extra memory stays the same whatever the vocabulary: 1,024 positions of 152k logits would be 0.6 GB per buffer.

**Precision.** Softmax, log-sum-exp, KL and the gradients' accumulation are float32 (at least) whatever the
model's dtype or autocast. The head products (student logits, teacher logits, and the two gradient products) take
their inputs in ``matmul_dtype``: by default the autocast dtype when autocast is on at the call (Trainer
``bf16=True``: bf16 inputs, float32 accumulation, as the model's own CE computes its logits there), else float32.
On a GPU this is the difference between tensor-core and float32 matrix speed: with float32 products, a step of
this loss alone (lambda 0) measured 2.0x the model's own CE step at a 152k vocabulary (docs/running-anywhere.md).
``matmul_dtype=torch.float32`` keeps the exact products.

**Reduction.** The loss is divided by ``num_items`` (default: this batch's supervised positions). Passing the
count over the whole gradient-accumulated batch (transformers' ``num_items_in_batch``) makes the accumulated
gradient equal to the full batch's.

**Teachers.** The target of a chunk comes from a :class:`TeacherTarget`: :class:`OnlineTeacher` (teacher hidden
states + teacher head: a frozen copy, or the same model with its LoRA adapter disabled) gives the exact
objective; :class:`CachedTeacher` rebuilds it from top-k statistics computed once, see :func:`teacher_topk_stats`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
DEFAULT_CHUNK_MB = 256.0  # [chunk, V] buffers of one chunk, all together (see chunk_rows)


# ---------------------------------------------------------------------------------------------------------------
def swap_top1_with_label(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Swap each row's top-1 logit with the label's logit. logits [N, V], labels [N] (no -100) -> new [N, V]."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    top1 = logits.argmax(dim=-1)
    z_top, z_label = logits[rows, top1], logits[rows, labels]
    swapped = logits.clone()
    swapped[rows, top1] = z_label
    swapped[rows, labels] = z_top  # when top1 == label this writes back the original value: a no-op
    return swapped


# ---------------------------------------------------------------------------------------------------------------
_CPU_BUFFERS: dict = {}


def _buffer(name: str, rows: int, cols: int, dtype, device) -> torch.Tensor:
    """A [rows, cols] scratch tensor. On CPU it is kept and reused across calls: a fresh tensor of this size costs
    more in page faults than the arithmetic done in it (measured, docs/stage1.md). CUDA's caching allocator already reuses."""
    if torch.device(device).type != "cpu":
        return torch.empty(rows, cols, dtype=dtype, device=device)
    key = (name, dtype)
    buf = _CPU_BUFFERS.get(key)
    if buf is None or buf.numel() < rows * cols:
        buf = _CPU_BUFFERS[key] = torch.empty(rows * cols, dtype=dtype)
    return buf[: rows * cols].view(rows, cols)


def _softmax_(x: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """In place: x <- softmax(x / tau) along the last dim. Returns logsumexp(x / tau) [rows]. No allocation."""
    if tau != 1.0:
        x.div_(tau)
    m = x.amax(dim=-1, keepdim=True)
    x.sub_(m).exp_()
    total = x.sum(dim=-1, keepdim=True)
    x.div_(total)
    return (m + total.log()).squeeze(-1)


def _rowdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """[n] row-wise dot products of two [n, V] tensors, without an [n, V] temporary."""
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)


class TeacherTarget:
    """The teacher side of one chunk of supervised positions (rows ``sl`` of the flattened selection), in two steps:

    ``begin(s, sl, labels, tau, swap, matmul_dtype)`` sees the chunk's raw student logits ``s`` [n, V] (read only;
    ``matmul_dtype``: the dtype of any head product's inputs, see the module docstring);
    ``finish(p_tau, lse_tau)`` gets the student's softmax(s / tau) and logsumexp(s / tau) [n] and returns
    ``(kl_sum, q)``: the chunk's sum of KL terms, and the dense [n, V] target whose difference from ``p_tau`` is the
    KL's gradient: d KL / d s = (p_tau - q) / tau.
    """

    def begin(self, s, sl, labels, tau, swap, matmul_dtype=None):
        raise NotImplementedError

    def finish(self, p_tau, lse_tau):
        raise NotImplementedError

    def n_rows(self) -> int:
        """How many positions the target holds (must equal the student's N)."""
        raise NotImplementedError


class OnlineTeacher(TeacherTarget):
    """Exact target: teacher logits recomputed per chunk from teacher hidden states [N, H_t] and its LM head."""

    def __init__(self, hidden: torch.Tensor, head: torch.nn.Module):
        self.hidden, self.head = hidden.detach(), head
        self._weights = {}  # the head weight in each matmul dtype asked for: converted once, not per chunk

    def n_rows(self) -> int:
        return self.hidden.shape[0]

    def begin(self, s, sl, labels, tau, swap, matmul_dtype=None):
        n, v = s.shape
        mm = matmul_dtype or s.dtype
        z = _buffer("teacher", n, v, s.dtype, s.device)
        with torch.no_grad():
            if type(self.head) is torch.nn.Linear:
                w = self._weights.get(mm)
                if w is None:
                    w = self._weights[mm] = self.head.weight.to(mm)
                if mm == s.dtype:
                    torch.mm(self.hidden[sl].to(mm), w.t(), out=z)
                else:  # low-precision inputs, float32 accumulation; the logits then kept in s's dtype
                    z_mm = _buffer("teacher_mm", n, v, mm, s.device)
                    torch.mm(self.hidden[sl].to(mm), w.t(), out=z_mm)
                    z.copy_(z_mm)
                if self.head.bias is not None:
                    z.add_(self.head.bias)
            else:  # e.g. an adapter-disabled LoRA head: its input in its own dtype (autocast is off here)
                w = next(self.head.parameters(), None)
                x = self.hidden[sl]
                z.copy_(self.head(x if w is None else x.to(w.dtype)))
        if swap:
            rows = torch.arange(n, device=s.device)
            top = z.argmax(dim=-1)
            z_top, z_label = z[rows, top], z[rows, labels]
            z[rows, top] = z_label
            z[rows, labels] = z_top  # when top == label this writes back the original value: a no-op
        diff = _buffer("teacher_minus_student", n, v, s.dtype, s.device)
        torch.sub(z, s, out=diff)
        lse_z = _softmax_(z, tau)  # z now holds q
        # KL = sum q (log q - log p) = (1/tau) sum q (z~ - s) - lse(z~/tau) + lse(s/tau); the last term in finish
        self._partial, self._q = (_rowdot(z, diff) / tau - lse_z).sum(), z

    def finish(self, p_tau, lse_tau):
        return self._partial + lse_tau.sum(), self._q


def teacher_topk_stats(teacher_logits: torch.Tensor, labels: torch.Tensor, k: int, tau: float = 1.0) -> dict:
    """What :class:`CachedTeacher` needs, per position, instead of the full teacher logits.

    Args: teacher_logits [n, V]; labels [n] (no -100); k top entries to keep; tau the temperature the cache is for.
    Returns: ``topk_logits`` [n, k] (descending; column 0 is the top-1), ``topk_ids`` [n, k], ``label_logit`` [n],
    ``lse`` [n] = logsumexp(z / tau) over the whole vocabulary (so the cached probabilities are exact, and the
    mass outside the top-k is known).
    """
    z = teacher_logits.to(torch.promote_types(teacher_logits.dtype, torch.float32))
    vals, ids = z.topk(k, dim=-1)
    return {"topk_logits": vals, "topk_ids": ids, "label_logit": z.gather(1, labels[:, None]).squeeze(1),
            "lse": torch.logsumexp(z / tau, dim=-1)}


class CachedTeacher(TeacherTarget):
    """Approximate target from :func:`teacher_topk_stats` (no teacher in memory during training).

    The known tokens are the teacher's top-k and the label; after the swap their probabilities are exact (the swap
    permutes logits, so logsumexp is unchanged). All other tokens form one "rest" bucket holding the remaining
    teacher mass q_r, compared with the student's mass p_r on the same tokens: the KL between these
    coarse-grained distributions. It is exact when k covers the vocabulary and never larger than the full KL
    (merging outcomes cannot increase a KL divergence). Its gradient is that of a full KL toward q~, where q~ is
    the teacher on the known tokens and the student's own tail rescaled to mass q_r elsewhere.
    """

    def __init__(self, stats: dict, tau: float):
        self.stats, self.tau = stats, tau

    def n_rows(self) -> int:
        return self.stats["lse"].shape[0]

    def begin(self, s, sl, labels, tau, swap, matmul_dtype=None):  # no head product: matmul_dtype unused
        if tau != self.tau:
            raise ValueError(f"cached teacher statistics are for tau={self.tau}, the loss asks for tau={tau}")
        dt = s.dtype
        vals, ids = self.stats["topk_logits"][sl].to(dt), self.stats["topk_ids"][sl]
        z_label, lse = self.stats["label_logit"][sl].to(dt), self.stats["lse"][sl].to(dt)
        in_topk = ids == labels[:, None]  # [n, k]
        label_in_topk = in_topk.any(dim=1)
        if swap:  # the top-1 (column 0) takes the label's logit; the label, wherever it is, takes the top-1's
            top = vals[:, 0].clone()
            vals = torch.where(in_topk, top[:, None], vals)
            vals[:, 0] = torch.where(in_topk[:, 0], top, z_label)
            z_label = torch.where(label_in_topk, z_label, top)
        self.ids, self.labels, self.label_in_topk = ids, labels, label_in_topk
        self.log_q_k = vals / tau - lse[:, None]  # [n, k]
        self.log_q_y = torch.where(label_in_topk, torch.full_like(z_label, -torch.inf), z_label / tau - lse)  # [n]
        self.s_k, self.s_y = s.gather(1, ids) / tau, s.gather(1, labels[:, None]).squeeze(1) / tau  # raw, / tau

    def finish(self, p_tau, lse_tau):
        log_p_k, log_p_y = self.s_k - lse_tau[:, None], self.s_y - lse_tau
        q_k, q_y, out = self.log_q_k.exp(), self.log_q_y.exp(), ~self.label_in_topk
        rows = out.nonzero(as_tuple=True)[0]
        # The student's tail mass, summed over the tail itself: 1 - sum(known) cancels catastrophically when the
        # known tokens hold almost all of the mass (large k), and the tail target below divides by it.
        q = _buffer("teacher", *p_tau.shape, p_tau.dtype, p_tau.device)
        q.copy_(p_tau)
        q.scatter_(1, self.ids, 0.0)
        q[rows, self.labels[rows]] = 0.0
        p_rest = q.sum(1).clamp(min=torch.finfo(q.dtype).tiny)
        q_rest = (1 - q_k.sum(1) - q_y).clamp(min=0)
        kl = (q_k * (self.log_q_k - log_p_k)).sum() + torch.where(out, q_y * (self.log_q_y - log_p_y), 0.0).sum()
        kl = kl + torch.xlogy(q_rest, q_rest).sum() - (q_rest * p_rest.log()).sum()
        q.mul_((q_rest / p_rest)[:, None])  # the tail, in the student's own proportions, scaled to mass q_rest
        q.scatter_(1, self.ids, q_k)
        q[rows, self.labels[rows]] = q_y[rows]
        return kl, q


# ---------------------------------------------------------------------------------------------------------------
class _ChunkedHeadLoss(torch.autograd.Function):
    """(1 - lam) * CE + lam * KL of ``head(h)`` over the rows of h, chunk by chunk.

    The gradient with respect to the chunk's logits has a closed form,
    g = (1 - lam) * (softmax(s) - onehot(y)) + lam / tau * (softmax(s / tau) - q),
    so forward turns it straight into the gradients of h, the head weight and bias. Each chunk works in a few
    reused [chunk, V] buffers, in place: no [N, V] tensor and no per-chunk allocation.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, labels, teacher, lam, tau, swap, chunk_size, num_items, matmul_dtype):
        need_grad = any(ctx.needs_input_grad[:3])
        dt = torch.promote_types(h.dtype, torch.float32)  # softmax statistics in fp32 at least (bf16 models too)
        mm = matmul_dtype or dt  # the head products' inputs (module docstring: Precision)
        low = mm != dt
        n_all, v = h.shape[0], weight.shape[0]
        w = weight.to(mm)
        grad_h = torch.zeros_like(h, dtype=dt) if need_grad else None
        grad_w = torch.zeros_like(weight, dtype=dt) if need_grad else None
        grad_b = torch.zeros_like(bias, dtype=dt) if (need_grad and bias is not None) else None
        ce_sum = torch.zeros((), dtype=dt, device=h.device)
        kl_sum = torch.zeros((), dtype=dt, device=h.device)
        for start in range(0, n_all, chunk_size):
            sl = slice(start, min(start + chunk_size, n_all))
            h_c, y_c = h[sl].to(mm), labels[sl]
            n = h_c.shape[0]
            rows = torch.arange(n, device=h.device)
            s = _buffer("student", n, v, dt, h.device)
            if low:
                s_mm = _buffer("student_mm", n, v, mm, h.device)
                torch.mm(h_c, w.t(), out=s_mm)
                s.copy_(s_mm)
            else:
                torch.mm(h_c, w.t(), out=s)
            if bias is not None:
                s.add_(bias.to(dt))
            if teacher is not None:  # KL needs a teacher; with lam == 0 it is only logged
                teacher.begin(s, sl, y_c, tau, swap, mm)
            s_label = s[rows, y_c]
            p_tau = None
            if tau != 1.0:
                p_tau = _buffer("student_tau", n, v, dt, h.device)
                p_tau.copy_(s)
                lse_tau = _softmax_(p_tau, tau)
            lse = _softmax_(s)  # s now holds softmax(s)
            if tau == 1.0:
                p_tau, lse_tau = s, lse
            ce_sum += (lse - s_label).sum()  # CE is logged whatever lam is
            q = None
            if teacher is not None:
                kl, q = teacher.finish(p_tau, lse_tau)
                kl_sum += kl
            if need_grad:  # g = (1 - lam)(p - onehot) + lam / tau (p_tau - q), built in s
                if q is not None and lam > 0 and tau == 1.0:
                    s.sub_(q, alpha=lam)  # (1 - lam) p + lam (p - q) = p - lam q
                elif q is not None and lam > 0:
                    s.mul_(1.0 - lam).add_(p_tau, alpha=lam / tau).sub_(q, alpha=lam / tau)
                else:
                    s.mul_(1.0 - lam)
                s[rows, y_c] -= 1.0 - lam
                if low:  # g in the matmul dtype (as autocast's backward has it); sums over chunks in float32
                    s_mm.copy_(s)
                    grad_h[sl].copy_(torch.mm(s_mm, w))
                    gw = _buffer("grad_w_mm", v, h.shape[1], mm, h.device)
                    torch.mm(s_mm.t(), h_c, out=gw)
                    grad_w.add_(gw)
                else:
                    torch.mm(s, w, out=grad_h[sl])
                    grad_w.addmm_(s.t(), h_c)
                if grad_b is not None:
                    grad_b += s.sum(0)
        ctx.num_items, ctx.dtypes = num_items, (h.dtype, weight.dtype, bias.dtype if bias is not None else None)
        ctx.save_for_backward(grad_h, grad_w, grad_b)
        ctx.mark_non_differentiable(ce_sum, kl_sum)
        loss = ((1 - lam) * ce_sum + lam * kl_sum) / num_items
        return loss, ce_sum, kl_sum

    @staticmethod
    def backward(ctx, g_loss, _g_ce, _g_kl):
        grads = []
        for g, dtype in zip(ctx.saved_tensors, ctx.dtypes):
            grads.append(None if g is None else (g * (g_loss / ctx.num_items)).to(dtype))
        return (*grads, None, None, None, None, None, None, None, None)


@dataclass
class LSSDOutput:
    """``loss`` (differentiable) = (1 - lam) * ce + lam * lssd; ``ce`` and ``lssd`` are token means, detached."""

    loss: torch.Tensor
    ce: torch.Tensor
    lssd: torch.Tensor
    n_tokens: int


def supervised_rows(hidden: torch.Tensor, labels: torch.Tensor):
    """Causal-LM shift and selection: hidden [B, T, H], labels [B, T] (unshifted, -100 = ignore).

    Returns ``(h [N, H], y [N], rows [N])``: hidden state t predicts label t+1; ``rows`` index
    ``hidden[:, :-1].reshape(-1, H)``, so a teacher's hidden states can be gathered with the same rows.
    """
    shifted = labels[:, 1:].reshape(-1)
    rows = (shifted != IGNORE_INDEX).nonzero(as_tuple=True)[0]
    return hidden[:, :-1].reshape(-1, hidden.shape[-1])[rows], shifted[rows], rows


def chunk_rows(vocab: int, budget_mb: float, teacher: TeacherTarget | None, tau: float = 1.0,
               itemsize: int = 4, matmul_itemsize: int | None = None) -> int:
    """Positions per chunk such that the chunk's [rows, vocab] buffers of ``itemsize`` bytes fit in ``budget_mb``.

    The buffers: the student's logits (always), the online teacher's logits and their difference (two), or the
    cached teacher's dense target (one), and a second student softmax when tau != 1; with head products in a
    smaller dtype (``matmul_itemsize`` bytes), the student's and the online teacher's product in that dtype as well.
    At least 1 row."""
    online = isinstance(teacher, OnlineTeacher)
    row = (1 + (2 if online else 1 if teacher is not None else 0) + (tau != 1.0)) * itemsize
    if matmul_itemsize is not None and matmul_itemsize != itemsize:
        row += (1 + online) * matmul_itemsize
    return max(1, int(budget_mb * 2**20) // (row * vocab))


def check_inputs(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor,
                 teacher: TeacherTarget | None) -> None:
    """ValueError, naming the problem, for inputs :func:`chunked_lssd` would get silently wrong or fail on deep inside.

    The one that matters most: ``labels`` still holding -100 (not passed through :func:`supervised_rows`). Indexing
    a [n, V] chunk with -100 reads column V - 100, a silently wrong loss whenever V > 100 (and an IndexError below).
    Cost: one min/max over the N labels (a single host sync; the Trainer syncs every step for its logs anyway),
    microseconds next to the chunks' [n, H] x [H, V] matmuls.
    """
    if hidden.dim() != 2:
        raise ValueError(f"hidden must be [N, H] (the supervised rows: see supervised_rows), got shape "
                         f"{tuple(hidden.shape)}")
    n, v = hidden.shape[0], weight.shape[0]
    if labels.dim() != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must be [N] with N = {n} (one per row of hidden), got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer token ids, got dtype {labels.dtype}")
    if weight.dim() != 2 or weight.shape[1] != hidden.shape[1]:
        raise ValueError(f"the head's weight must be [V, H] with H = {hidden.shape[1]} (hidden's width), got shape "
                         f"{tuple(weight.shape)}")
    if teacher is not None and teacher.n_rows() != n:
        raise ValueError(f"the teacher target has {teacher.n_rows()} rows, the student {n}: gather both with the "
                         "same rows (see supervised_rows)")
    if n:
        lo, hi = torch.stack(torch.aminmax(labels)).tolist()  # one transfer to the host
        if lo < 0 and bool((labels == IGNORE_INDEX).any()):
            raise ValueError(f"labels contain {IGNORE_INDEX} (ignored positions): pass only the supervised rows, "
                             "h, y, rows = supervised_rows(hidden, labels)")
        if lo < 0 or hi >= v:
            raise ValueError(f"labels must be token ids in [0, {v}) (the head's vocabulary), got values from {lo} "
                             f"to {hi}")


def chunked_lssd(hidden: torch.Tensor, head: torch.nn.Linear, labels: torch.Tensor, teacher: TeacherTarget | None,
                 lam: float, tau: float = 1.0, swap: bool = True, chunk_size: int | None = None,
                 num_items: int | torch.Tensor | None = None, chunk_mb: float | None = None,
                 matmul_dtype: torch.dtype | None = None) -> LSSDOutput:
    """``(1 - lam) * CE + lam * L_LSSD`` from the student's final hidden states, never materialising full logits.

    Args:
        hidden: [N, H] student hidden states at the supervised positions (see :func:`supervised_rows`).
        head: the student's LM head (``weight`` [V, H], optional ``bias``); tied embeddings are fine.
        labels: [N] next-token ids at those positions.
        teacher: a :class:`TeacherTarget` indexed by the same rows (may be None when ``lam == 0``).
        lam, tau, swap: the objective's parameters (module docstring).
        chunk_size: positions per chunk (extra memory: up to 4 * chunk_size * V floats); default: from ``chunk_mb``.
        num_items: the normaliser (supervised positions in the whole accumulated batch); default N.
        chunk_mb: memory budget of one chunk's [chunk, V] buffers (default :data:`DEFAULT_CHUNK_MB`), used when
            ``chunk_size`` is not given (:func:`chunk_rows`).
        matmul_dtype: the head products' input dtype (module docstring: Precision); default: the autocast dtype if
            autocast is on for hidden's device at the call, else float32 (at least). Statistics stay float32.

    Raises ValueError for inputs of the wrong shape or labels outside [0, V), -100 among them (:func:`check_inputs`).
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lambda must be in [0, 1], got {lam}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if lam > 0 and teacher is None:
        raise ValueError("lambda > 0 needs a teacher")
    check_inputs(hidden, head.weight, labels, teacher)
    dt = torch.promote_types(hidden.dtype, torch.float32)  # the statistics' and buffers' dtype (forward)
    device_type = hidden.device.type
    if matmul_dtype is None:
        matmul_dtype = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else dt
    if chunk_size is None:
        chunk_size = chunk_rows(head.weight.shape[0], DEFAULT_CHUNK_MB if chunk_mb is None else chunk_mb, teacher,
                                tau, dt.itemsize, matmul_dtype.itemsize)
    elif chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    n = hidden.shape[0]
    norm = float(num_items) if num_items is not None else float(max(n, 1))
    # The statistics compute in float32 (at least) by design; under bf16 autocast (Trainer bf16=True) ops without
    # out= (the KL's row dot products, an adapter's head) would silently drop to bf16: measured 3e-4 relative on
    # L_LSSD. Only the head products follow matmul_dtype, explicitly.
    with torch.autocast(device_type, enabled=False):
        loss, ce_sum, kl_sum = _ChunkedHeadLoss.apply(hidden, head.weight, head.bias, labels, teacher, float(lam),
                                                      float(tau), bool(swap), int(chunk_size), norm,
                                                      None if matmul_dtype == dt else matmul_dtype)
    return LSSDOutput(loss, ce_sum / max(n, 1), kl_sum / max(n, 1), n)


def swap_explained(teacher_logits: torch.Tensor, label: int, tau: float = 1.0, top: int = 8) -> dict:
    """For one position, the teacher's distribution before and after the swap, on the tokens that matter.

    Args: teacher_logits [V]; label the true next token id. Returns ``{"token_ids": [top ids ∪ {label}],
    "teacher": probs, "swapped": probs (same order), "teacher_top1": id}``: probabilities at temperature tau.
    """
    z = teacher_logits.detach().double()
    swapped = swap_top1_with_label(z[None], torch.tensor([label]))[0]
    p, q = torch.softmax(z / tau, -1), torch.softmax(swapped / tau, -1)
    ids = p.topk(top).indices.tolist()
    if label not in ids:
        ids.append(label)
    return {"token_ids": ids, "teacher": p[ids].tolist(), "swapped": q[ids].tolist(), "teacher_top1": int(z.argmax())}
