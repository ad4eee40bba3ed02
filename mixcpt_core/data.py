"""Stage-1 data: D_MIX, domain documents mixed with *general* instruction and preference data as plain text.

Three steps, each a small function:

1. **Flatten** every record to plain text, without chat template or role tokens (:func:`flatten_messages`,
   :func:`flatten_instruction`, :func:`flatten_preference`). The default :class:`FlattenLayout` turns a single-turn
   user/assistant record into exactly ``Question: …\\nAnswer: …``, the plain QA format the base model already saw.
2. **Mix** the sources by **token share of the final stream**: a share of 0.6 means that 60% of the non-padding
   tokens of the packed output come from that source (each text's BOS and EOS count with it). This is *not* the
   per-example sampling probability of ``datasets.interleave_datasets`` or LLaMA-Factory's ``interleave_probs``,
   under which a source of long documents gets more tokens than its probability. A source is repeated in whole
   passes and topped up with a seeded random subset of its texts to reach its token target (:func:`plan_mix`).
3. **Pack** the shuffled texts, each ``BOS text EOS`` as in base pre-training, back to back into blocks of
   ``block_length`` tokens; loss on every token (:func:`pack_tokens`). Only the last block can hold padding.

Reading the inputs (files, Hugging Face datasets, the world) is in :mod:`mixcpt_core.sources`.
"""

from __future__ import annotations

import dataclasses
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import check_choice, check_numbers, number_problem
from .jsonl import DataError  # defined there, next to the exact readers, so that every reader can raise it
from .world import WorldConfig

ROLES = ("system", "user", "assistant")
PREFERENCE_MODES = ("prompt_chosen", "chosen_and_rejected", "chosen_only")
# kind -> the fields of one record: what ``columns`` can map to the file's own column names
FILE_KINDS = {"documents": ("text",), "alpaca": ("instruction", "output", "input", "system"), "chat": ("messages",),
              "preference": ("prompt", "chosen", "rejected")}
WORLD_KINDS = {"world_domain_docs": "documents", "world_instructions": "chat", "world_preferences": "preference"}
IGNORE_INDEX = -100  # label of padding positions (ignored by the loss)


class FieldError(DataError):
    """A problem in one field of one record: ``key`` (top-level field), ``rest`` (path inside it, ``[1].role``) and
    ``problem``. The reader, which knows the file, line and the file's own column names, re-raises it with them."""

    def __init__(self, key: str, rest: str, problem: str):
        self.key, self.rest, self.problem = key, rest, problem
        super().__init__(f"field '{key}'{rest}: {problem}")


# -- 1. flattening ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FlattenLayout:
    """How a conversation becomes plain text: each turn is ``prefix + content``, turns joined by ``separator``.
    The defaults reproduce :func:`mixcpt_core.world.plain_qa_text` for one user/assistant turn."""

    system_prefix: str = ""
    user_prefix: str = "Question: "
    assistant_prefix: str = "Answer: "
    separator: str = "\n"

    def prefix(self, role: str) -> str:
        return {"system": self.system_prefix, "user": self.user_prefix, "assistant": self.assistant_prefix}[role]


def check_text(value, key: str, rest: str = "") -> str:
    """``value`` if it is a non-blank string, else :class:`FieldError` saying what it is instead."""
    if value is None:
        raise FieldError(key, rest, "missing")
    if not isinstance(value, str):
        raise FieldError(key, rest, f"expected a string, got {type(value).__name__} {value!r:.40}")
    if not value.strip():
        raise FieldError(key, rest, "empty text")
    return value


def check_messages(messages, key: str = "messages", need_assistant: bool = True) -> list[dict]:
    """Validate a list of ``{"role", "content"}`` turns (roles: system, user, assistant); returns it."""
    if not isinstance(messages, list):
        raise FieldError(key, "", "missing" if messages is None else
                         f"expected a list of messages, got {type(messages).__name__}")
    if not messages:
        raise FieldError(key, "", "empty list of messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise FieldError(key, f"[{i}]", f"expected an object with 'role' and 'content', got {type(m).__name__}")
        role = m.get("role")
        if not isinstance(role, str):
            raise FieldError(key, f"[{i}].role", "missing" if role is None else f"expected a string, got {role!r}")
        if role not in ROLES:
            raise FieldError(key, f"[{i}].role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
        check_text(m.get("content"), key, f"[{i}].content")
    if need_assistant and not any(m["role"] == "assistant" for m in messages):
        raise FieldError(key, "", "no assistant message")
    return messages


def flatten_messages(messages: list[dict], layout: FlattenLayout = FlattenLayout()) -> str:
    """A conversation as plain text: ``[system]\\nQuestion: u1\\nAnswer: a1\\nQuestion: u2\\nAnswer: a2`` (default)."""
    check_messages(messages)
    return layout.separator.join(layout.prefix(m["role"]) + m["content"] for m in messages)


def alpaca_messages(record: dict, layout: FlattenLayout = FlattenLayout()) -> list[dict]:
    """Alpaca ``instruction`` [+ ``input``] -> user turn, ``output`` -> assistant turn, optional ``system`` first."""
    user = check_text(record.get("instruction"), "instruction")
    extra = record.get("input")
    if extra is not None and not isinstance(extra, str):
        raise FieldError("input", "", f"expected a string, got {type(extra).__name__}")
    if extra and extra.strip():  # an empty input is the Alpaca convention for "no input"
        user += layout.separator + extra
    answer = check_text(record.get("output"), "output")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    system = record.get("system")
    if system is not None and (not isinstance(system, str) or system.strip()):  # "" = no system message (CSV)
        messages.insert(0, {"role": "system", "content": check_text(system, "system")})
    return messages


def flatten_instruction(record: dict, layout: FlattenLayout = FlattenLayout()) -> str:
    """One instruction record as plain text: chat (``messages``) or Alpaca (``instruction``/``input``/``output``)."""
    if record.get("messages") is None and ("instruction" in record or "output" in record):
        return flatten_messages(alpaca_messages(record, layout), layout)
    return flatten_messages(check_messages(record.get("messages")), layout)


def _turns(value, key: str, role: str, need_assistant: bool) -> list[dict]:
    """A preference field as messages: a string is one turn of ``role``, a list is checked as messages."""
    if isinstance(value, str) or value is None:
        return [{"role": role, "content": check_text(value, key)}]
    return check_messages(value, key, need_assistant)


def flatten_preference(record: dict, layout: FlattenLayout = FlattenLayout(),
                       mode: str = "prompt_chosen") -> list[str]:
    """A preference pair (``prompt``, ``chosen``, ``rejected``: strings or message lists) as plain texts.

    ``mode``: ``prompt_chosen`` (default, one text: the prompt and the preferred answer, as Mix-CPT does),
    ``chosen_and_rejected`` (two texts, prompt + chosen and prompt + rejected: also trains on the rejected answer,
    for ablations only) or ``chosen_only`` (one text: the chosen answer's content, no prompt, no prefixes).
    """
    if mode not in PREFERENCE_MODES:
        raise ValueError(f"preference mode must be one of {PREFERENCE_MODES}, got {mode!r}")
    prompt = _turns(record.get("prompt"), "prompt", "user", need_assistant=False)
    chosen = _turns(record.get("chosen"), "chosen", "assistant", need_assistant=True)
    rejected = _turns(record.get("rejected"), "rejected", "assistant", need_assistant=True)
    if [(m["role"], m["content"].strip()) for m in chosen] == [(m["role"], m["content"].strip()) for m in rejected]:
        raise FieldError("rejected", "", "identical to 'chosen' (not a preference pair)")
    if mode == "chosen_only":
        return [layout.separator.join(m["content"] for m in chosen)]
    texts = [flatten_messages(prompt + chosen, layout)]
    return texts + [flatten_messages(prompt + rejected, layout)] if mode == "chosen_and_rejected" else texts


def record_texts(record: dict, kind: str, layout: FlattenLayout, mode: str) -> list[str]:
    """The plain texts of one record of ``kind`` (documents, alpaca, chat, preference); fields use canonical names."""
    if kind == "documents":
        return [check_text(record.get("text"), "text")]
    if kind == "alpaca":
        return [flatten_messages(alpaca_messages(record, layout), layout)]
    if kind == "chat":
        return [flatten_messages(record.get("messages"), layout)]
    return flatten_preference(record, layout, mode)


# -- config ----------------------------------------------------------------------------------------------------------
@dataclass
class SourceConfig:
    """One input of the mix. ``kind`` is a file kind (:data:`FILE_KINDS`, read from ``path`` or the Hugging Face
    dataset ``hub``/``split``) or a world part (:data:`WORLD_KINDS`, from :attr:`MixConfig.world`).
    ``columns`` maps a record field to the file's column name, e.g. ``{text: body}``. ``share``: see the module doc.
    """

    name: str = ""
    kind: str = ""
    share: float | None = None
    path: str | None = None
    hub: str | None = None
    subset: str | None = None  # a hub dataset's configuration ("subset" on the hub), e.g. finemath-4plus
    split: str = "train"  # slices work: "train[:100000]"
    columns: dict = field(default_factory=dict)

    RANGES = {"share": ">= 0"}  # checked below, in a message that names the source

    def __post_init__(self):
        if not self.name:
            raise ValueError("field 'name': every source needs a name")
        if self.kind not in FILE_KINDS and self.kind not in WORLD_KINDS:
            raise ValueError(f"source {self.name!r}: field 'kind': unknown kind {self.kind!r}; "
                             f"choose one of {sorted(FILE_KINDS) + sorted(WORLD_KINDS)}")
        if self.share is None or number_problem(self.share, self.RANGES["share"]):
            raise ValueError(f"source {self.name!r}: field 'share': " + ("missing (give 0 to leave the source out)"
                             if self.share is None else number_problem(self.share, self.RANGES["share"])))
        located = (self.path is not None) + (self.hub is not None)
        if self.kind in WORLD_KINDS and located:
            raise ValueError(f"source {self.name!r}: field 'path'/'hub': a {self.kind} source is built from the world")
        if self.kind in FILE_KINDS and located != 1:
            raise ValueError(f"source {self.name!r}: field 'path'/'hub': give exactly one of a file path or a hub id")
        if self.subset is not None and self.hub is None:
            raise ValueError(f"source {self.name!r}: field 'subset': only for a hub dataset (hub: org/name)")
        fields = FILE_KINDS.get(WORLD_KINDS.get(self.kind, self.kind))
        bad = {k: v for k, v in self.columns.items() if k not in fields or not isinstance(v, str)}
        if bad:
            raise ValueError(f"source {self.name!r}: field 'columns': cannot map {bad}; a {self.kind} record has "
                             f"fields {list(fields)} and each maps to a column name")


@dataclass
class MixConfig:
    """Everything D_MIX is a function of (with the tokenizer's files). ``total_tokens`` = non-padding tokens of the
    packed stream; ``None`` = as many as the scarcest source allows when no source is repeated. ``last_block``:
    ``pad`` (keep every token, pad the last block) or ``drop`` (drop the last partial block: no padding at all).
    Relative ``path``/``tokenizer`` values are resolved against the ``root`` given to :func:`build_mix`.
    """

    sources: list[SourceConfig] = field(default_factory=list)
    world: WorldConfig = field(default_factory=WorldConfig)
    tokenizer: str = "checkpoints/base-tiny"
    layout: FlattenLayout = field(default_factory=FlattenLayout)
    preference_mode: str = "prompt_chosen"
    block_length: int = 128
    total_tokens: int | None = None
    last_block: str = "pad"
    seed: int = 0
    output_dir: str = "runs/tiny/mix"

    RANGES = {"block_length": ">= 2", "total_tokens": ">= 1", "seed": ">= 0"}

    def __post_init__(self):
        check_numbers(self)
        if not self.sources:
            raise ValueError("field 'sources': at least one source is needed")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"field 'sources': source names must be unique, got {names}")
        if sum(s.share for s in self.sources) <= 0:
            raise ValueError(f"field 'share': all shares are zero (sources {names}); give at least one a share > 0")
        check_choice(self.preference_mode, "preference_mode", PREFERENCE_MODES)
        check_choice(self.last_block, "last_block", ("pad", "drop"))

    def with_shares(self, shares: dict[str, float]) -> MixConfig:
        """A copy with some sources' shares replaced (``{name: share}``); unknown names raise ``ValueError``."""
        names = [s.name for s in self.sources]
        if unknown := sorted(set(shares) - set(names)):
            raise ValueError(f"field 'share': unknown source(s) {unknown}; the sources are {names}")
        sources = [dataclasses.replace(s, share=float(shares.get(s.name, s.share))) for s in self.sources]
        return dataclasses.replace(self, sources=sources)


# -- 2. tokenising and mixing ----------------------------------------------------------------------------------------
def tokenize_texts(texts, tokenizer):
    """``Dataset{text}`` -> ``Dataset{input_ids, n_tokens}``, each text as ``[BOS] + ids + [EOS]`` (no BOS if the
    tokenizer has none). A batched ``map``: cached by ``datasets`` when ``texts`` is backed by a cache file."""
    head, eos = ([] if tokenizer.bos_token_id is None else [tokenizer.bos_token_id]), tokenizer.eos_token_id

    def encode(batch):
        ids = [head + x + [eos] for x in tokenizer(batch["text"], add_special_tokens=False)["input_ids"]]
        return {"input_ids": ids, "n_tokens": [len(x) for x in ids]}

    return texts.map(encode, batched=True, remove_columns=texts.column_names, desc="tokenize")


def plan_mix(lengths: dict[str, np.ndarray], shares: dict[str, float], total_tokens: int | None,
             seed: int) -> dict[str, np.ndarray]:
    """Which texts of each source go into the stream: ``{name: indices}`` (with repeats).

    ``lengths[name]``: tokens of each text of the source (one pass). Target tokens of a source =
    ``share / sum(shares) * total``; it gets ``floor(target / one_pass)`` whole passes, then the prefix of a seeded
    random permutation of its texts whose token count is closest to the rest. So each source lands within one text
    of its target. ``total_tokens=None``: the largest total for which no source needs more than one pass.
    """
    weights = {n: s / sum(shares.values()) for n, s in shares.items() if s > 0}
    one_pass = {n: int(lengths[n].sum()) for n in weights}
    total = total_tokens or int(min(one_pass[n] / w for n, w in weights.items()))
    plan = {}
    for name, w in weights.items():
        n = len(lengths[name])
        passes, rest = divmod(w * total, one_pass[name])
        perm = np.random.default_rng([seed, zlib.crc32(name.encode())]).permutation(n)  # per source, order-free
        reached = np.concatenate([[0], np.cumsum(lengths[name][perm])])
        plan[name] = np.concatenate([np.tile(np.arange(n), int(passes)), perm[: int(np.abs(reached - rest).argmin())]])
    return plan


def pack_tokens(tokens: np.ndarray, block_length: int, pad_id: int, last_block: str = "pad") -> np.ndarray:
    """Cut a 1-D token stream into ``[n_blocks, block_length]``. ``pad``: the last partial block is filled with
    ``pad_id`` (nothing lost); ``drop``: it is dropped (no padding)."""
    n_full, rest = divmod(len(tokens), block_length)
    if last_block == "drop" or rest == 0:
        return tokens[: n_full * block_length].reshape(n_full, block_length)
    padded = np.full((n_full + 1) * block_length, pad_id, dtype=tokens.dtype)
    padded[: len(tokens)] = tokens
    return padded.reshape(n_full + 1, block_length)


def _lengths(ds) -> np.ndarray:
    """The ``n_tokens`` column as one int64 array (a whole-column slice: fast, unlike iterating rows)."""
    return ds.with_format("numpy", columns=["n_tokens"])[:]["n_tokens"].astype(np.int64)


def mix_and_pack(tokenized: dict, cfg: MixConfig, pad_id: int):
    """Select (:func:`plan_mix`), shuffle with ``cfg.seed`` and pack the tokenised sources.

    ``tokenized``: ``{name: Dataset{input_ids, n_tokens}}`` for every source of ``cfg``. Returns ``(blocks,
    composition)``: a ``Dataset{input_ids, attention_mask, labels}`` of ``[block_length]`` rows (labels = input_ids,
    ``-100`` on padding) and the composition actually achieved, counted on the packed tokens.
    """
    from datasets import Dataset, concatenate_datasets

    names = list(tokenized)
    lengths = {n: _lengths(tokenized[n]) for n in names}
    plan = plan_mix(lengths, {s.name: s.share for s in cfg.sources}, cfg.total_tokens, cfg.seed)
    offsets = dict(zip(names, np.cumsum([0] + [len(tokenized[n]) for n in names])))
    rows = np.concatenate([offsets[n] + plan[n] for n in plan])
    source = np.concatenate([np.full(len(plan[n]), names.index(n)) for n in plan])
    order = np.random.default_rng(cfg.seed).permutation(len(rows))
    stream = concatenate_datasets([tokenized[n] for n in names]).select(rows[order])
    table = stream.with_format("arrow")[:]  # one Arrow gather of the selected rows (not a row-by-row copy)
    tokens = np.asarray(table.column("input_ids").combine_chunks().flatten(), dtype=np.int32)
    token_source = np.repeat(source[order], table.column("n_tokens").to_numpy())

    blocks = pack_tokens(tokens, cfg.block_length, pad_id, cfg.last_block)
    kept = min(len(tokens), blocks.size)  # tokens that made it into the blocks
    real = np.arange(blocks.size).reshape(blocks.shape) < kept
    packed = Dataset.from_dict({"input_ids": blocks, "attention_mask": real.astype(np.int8),
                                "labels": np.where(real, blocks, IGNORE_INDEX)})
    counts = np.bincount(token_source[:kept], minlength=len(names))
    placed = {n: lengths[n][plan.get(n, [])].sum() / lengths[n].sum() for n in names}  # tokens selected / one pass
    total_share, at = sum(s.share for s in cfg.sources), {n: i for i, n in enumerate(names)}
    rows_out = [{"name": s.name, "kind": s.kind, "requested_share": round(s.share / total_share, 6),
                 "share": round(float(counts[at[s.name]]) / max(kept, 1), 6), "tokens": int(counts[at[s.name]]),
                 "documents": len(plan.get(s.name, [])), "unique_documents": len(lengths[s.name]),
                 "one_pass_tokens": int(lengths[s.name].sum()), "repeat_factor": round(float(placed[s.name]), 4)}
                for s in cfg.sources]
    composition = {"sources": rows_out, "tokens": int(kept), "blocks": len(blocks), "block_length": cfg.block_length,
                   "padding_tokens": int(blocks.size - kept),
                   "padding_fraction": round((blocks.size - kept) / max(blocks.size, 1), 6),
                   "dropped_tokens": int(len(tokens) - kept), "last_block": cfg.last_block, "seed": cfg.seed,
                   "share_semantics": "share = fraction of the non-padding tokens of the packed stream"}
    return packed, composition


# -- 3. the whole pipeline -------------------------------------------------------------------------------------------
def load_tokenizer(name_or_path: str, root: str | Path | None = None):
    """``AutoTokenizer`` from a local directory (relative to ``root``), a hub id or ``smollm2:135m-instruct``."""
    from transformers import AutoTokenizer

    from .models import resolve_model_name

    name_or_path = str(resolve_model_name(name_or_path))
    local = Path(root or ".") / name_or_path
    try:
        return AutoTokenizer.from_pretrained(str(local) if local.exists() else name_or_path)
    except (OSError, ValueError) as e:  # no such directory and no hub access
        raise OSError(f"tokenizer {name_or_path!r}: not found at {local.resolve()} nor loadable from the hub "
                      f"({str(e).splitlines()[0]})") from None


def build_mix(cfg: MixConfig, tokenizer=None, root: str | Path | None = None):
    """Read, flatten, tokenise, mix and pack every source of ``cfg``: returns ``(blocks, composition)``.

    ``tokenizer``: an already loaded tokenizer, else ``cfg.tokenizer`` is loaded. Bad input raises :class:`DataError`.
    """
    from .sources import quiet_datasets, source_texts

    tokenizer = tokenizer or load_tokenizer(cfg.tokenizer, root)
    with quiet_datasets():
        tokenized = {s.name: tokenize_texts(source_texts(s, cfg, root), tokenizer) for s in cfg.sources}
        blocks, composition = mix_and_pack(tokenized, cfg, tokenizer.pad_token_id)
    composition["tokenizer"] = cfg.tokenizer
    composition["config"] = dataclasses.asdict(cfg)
    return blocks, composition


def save_mix(blocks, composition: dict, out_dir: str | Path) -> Path:
    """Write ``blocks`` (``save_to_disk``; read back with ``datasets.load_from_disk``) and ``composition.json``.

    Atomic: everything goes to a sibling temporary directory renamed into place at the end. An existing
    ``out_dir`` is replaced only if it is a mix directory already (it has a ``composition.json``).
    """
    from .atomic import atomic_directory
    from .sources import quiet_datasets

    with atomic_directory(out_dir, "composition.json") as tmp, quiet_datasets():
        blocks.save_to_disk(str(tmp))
        (tmp / "composition.json").write_text(json.dumps(composition, indent=2) + "\n", encoding="utf-8")
    return Path(out_dir)
