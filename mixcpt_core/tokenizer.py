"""A byte-level BPE tokenizer trained on the world, wrapped so it behaves like a real model's tokenizer.

It has BOS/EOS/PAD, chat role tokens and a Jinja chat template, is saved with ``save_pretrained`` and reloaded with
``AutoTokenizer.from_pretrained``; ``apply_chat_template`` works exactly as for a hub model.

Chat format (new to the base model, which only saw plain text; it is learned in stage 2)::

    <|bos|><|user|>
    What is the birth city of Ada Lorvik?<|end|>
    <|assistant|>
    Amberfall<|end|>

The assistant turn is wrapped in ``{% generation %}`` so TRL can train on assistant tokens only.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"
END_OF_TURN = "<|end|>"
ROLE_TOKENS = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}
SPECIAL_TOKENS = [PAD, BOS, EOS, END_OF_TURN, *ROLE_TOKENS.values()]

CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] not in ['system', 'user', 'assistant'] %}"
    "{{ raise_exception('unknown role: ' + message['role']) }}"
    "{% endif %}"
    "{{ '<|' + message['role'] + '|>\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ message['content'] + '<|end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)


def train_tokenizer(texts: list[str], vocab_size: int = 1024, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train byte-level BPE on ``texts`` and wrap it as a ``PreTrainedTokenizerFast``.

    Plain ``tokenizer(text)`` prepends BOS (as Llama tokenizers do) and appends nothing; the training code adds
    EOS between packed documents. Training is deterministic for the same texts in the same order.
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        additional_special_tokens=[END_OF_TURN, *ROLE_TOKENS.values()],
        chat_template=CHAT_TEMPLATE,
        model_max_length=2048,
        padding_side="right",
    )


def end_of_turn_id(tokenizer) -> int:
    """Token id that closes a chat turn; generation in chat format stops on it.

    ``<|end|>`` for this project's tokenizers; for a hub chat model without it, its EOS token, which closes an
    assistant turn in their templates (SmolLM2 and Qwen2.5: ``<|im_end|>``, Llama 3: ``<|eot_id|>``)."""
    token_id = tokenizer.convert_tokens_to_ids(END_OF_TURN)  # an unknown token gives None or the unk id
    if token_id is None or (token_id == tokenizer.unk_token_id and tokenizer.unk_token != END_OF_TURN):
        return tokenizer.eos_token_id
    return token_id
