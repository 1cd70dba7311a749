"""How prompts become token ids: the model's family, whether its prompts start with BOS (one rule by
family, whatever the model is called), and their encoding."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .registry import model_spec

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Whether prompts start with BOS, by family. Llama 1/2: none, as the reference code tokenizes its
# prompts (`add_special_tokens=False`); Gemma: always (without it the base model answers with junk).
FAMILY_BOS = {"llama": False, "gemma": True}
# How each family's rule reads in a run's config.json.
FAMILY_RULES = {
    "llama": "Llama 1/2: no BOS, as the reference code tokenizes without special tokens",
    "gemma": "Gemma: BOS first",
    "llama-chat": "Llama-2-chat: BOS, then the reference's [INST] <<SYS>> format",
    "chat": "a chat template: BOS first where the template starts with the BOS its tokenizer adds",
    "": "the tokenizer's own convention",
}
LLAMA_BOS = "<s>"  # Llama 1/2's sentencepiece vocabulary: <unk> 0, <s> 1, </s> 2


def tokenizer_adds_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether the tokenizer puts BOS first when asked for its special tokens (its own convention)."""
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        return False
    ids = tokenizer("x")["input_ids"]
    return bool(ids) and ids[0] == bos and tokenizer("x", add_special_tokens=False)["input_ids"][:1] != [bos]


def model_family(name: str, tokenizer: PreTrainedTokenizerBase, config: object | None = None) -> str:
    """The model's family as far as prompting goes: `llama` (Llama 1/2: a `llama` config with the `<s>`
    sentencepiece vocabulary), `gemma` (any Gemma config), else "". Registered models say it; any other
    folder or hub id is read from its config (`config`, when the model is loaded already), so the rule
    does not depend on what the model is called."""
    spec = model_spec(name)
    if spec.family or not spec.source or spec.source.startswith(("package:", "assemble:", "tiny-random")):
        return spec.family
    model_type = str(getattr(config or _config(spec.source), "model_type", "") or "")
    if model_type.startswith("gemma"):
        return "gemma"
    if model_type == "llama" and getattr(tokenizer, "bos_token", None) == LLAMA_BOS:
        return "llama"
    return ""


def _config(source: str) -> object | None:
    """A folder's or hub id's config, from the local cache first (None when it cannot be read: the
    tokenizer's convention applies)."""
    from transformers import AutoConfig

    for local in (True, False):
        try:
            return AutoConfig.from_pretrained(source, local_files_only=local)
        except (OSError, ValueError):
            pass
    return None


def chat_format(name: str, tokenizer: PreTrainedTokenizerBase, config: object | None = None) -> str | None:
    """How a chat model is prompted: `llama-chat` (Llama-2-chat: the reference code's own format) or
    `template` (the tokenizer's chat template); None for a model that is not a chat model."""
    if not model_spec(name).chat:
        return None
    return "llama-chat" if model_family(name, tokenizer, config) == "llama" else "template"


def template_bos(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether a chat template's text starts with the BOS its tokenizer adds by default (that text is
    then dropped and the BOS id put first, so the token after it never depends on how a tokenizer
    version splits text after a special token)."""
    bos = getattr(tokenizer, "bos_token", None)
    if not bos or not getattr(tokenizer, "chat_template", None) or not tokenizer_adds_bos(tokenizer):
        return False
    probe = [{"role": "user", "content": "x"}]
    return tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True).startswith(bos)


def bos_rule(name: str, tokenizer: PreTrainedTokenizerBase, config: object | None = None) -> tuple[bool, str]:
    """Whether prompts for this model start with BOS, and the rule that says so (for config.json)."""
    form = chat_format(name, tokenizer, config)
    if form == "llama-chat":
        return True, FAMILY_RULES["llama-chat"]
    if form == "template":
        return template_bos(tokenizer), FAMILY_RULES["chat"]
    family = model_family(name, tokenizer, config)
    if family in FAMILY_BOS:
        return FAMILY_BOS[family], FAMILY_RULES[family]
    return tokenizer_adds_bos(tokenizer), FAMILY_RULES[""]


def prompt_bos(name: str, tokenizer: PreTrainedTokenizerBase, config: object | None = None) -> bool:
    """Whether prompts for this model start with BOS (see `bos_rule`)."""
    return bos_rule(name, tokenizer, config)[0]


def encode_prompts(tokenizer: PreTrainedTokenizerBase, prompts: Sequence[str], bos: bool) -> list[list[int]]:
    """Token ids of each prompt as the model sees them: no special tokens, BOS first if `bos`."""
    if not prompts:
        return []
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    head = [tokenizer.bos_token_id] if bos and tokenizer.bos_token_id is not None else []
    return [head + list(row) for row in ids]
