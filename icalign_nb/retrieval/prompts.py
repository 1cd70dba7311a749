"""Prompt templates and their stop strings: the paper's, zero-shot, URIAL-style and chat."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.fetch import package_resource
from ..errors import UserError
from ..files import read_text

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The reference code's templates, to the character (note the curly apostrophe U+2019).
DEMO_TEMPLATE = "Question: {prompt}\n\nHere\u2019s an example answer: {response}"
QUERY_TEMPLATE = "Question: {query}\n\nHere\u2019s an example answer:"
ZERO_SHOT_TEMPLATE = "Question: {query}\n\nAnswer:"
DEMO_SEPARATOR = "\n\n"
PAPER_STOP = ("\nQuestion:",)

# URIAL's layout: a constant preamble, then each turn as a fenced `# Query:` / `# Answer:` pair.
URIAL_QUERY_TEMPLATE = "# Query:\n```\n{query}\n```\n\n# Answer:\n```\n"
URIAL_STOP = ("# Query:",)

# Llama-2-chat as the reference code prompts it (decode_llamachat.py): Meta's `[INST]`/`<<SYS>>` layout
# around Llama-2's default system prompt, tokenized with special tokens (so BOS, then this text).
LLAMA_CHAT_TEMPLATE = "[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{query} [/INST]"
# Llama-2's default system prompt, character for character as published by Meta with Llama-2 (the
# DEFAULT_SYSTEM_PROMPT of its reference chat code), repeated by the reference code and by transformers'
# LlamaTokenizer (its legacy default system prompt); tests check it by its sha256.
LLAMA_CHAT_SYSTEM = (
    "You are a helpful, respectful and honest assistant. Always answer as helpfully as possible, while "
    "being safe. Your answers should not include any harmful, unethical, racist, sexist, toxic, "
    "dangerous, or illegal content. Please ensure that your responses are socially unbiased and "
    "positive in nature.\n\nIf a question does not make any sense, or is not factually coherent, "
    "explain why instead of answering something not correct. If you don't know the answer to a "
    "question, please don't share false information."
)

# The system text of the system-text ablations (the project's own words): who is answering, and how.
SYSTEM_TEXT = (
    "Below are questions from users, each followed by an answer written by a helpful, honest and "
    "harmless AI assistant. The assistant answers exactly what was asked, gives accurate and specific "
    "information, explains its reasoning step by step when that helps, says so when it does not know, "
    "and politely declines requests that could cause harm."
)


def demo_text(prompt: str, response: str) -> str:
    """One demonstration as the paper formats it (both sides stripped, as the reference does)."""
    return DEMO_TEMPLATE.format(prompt=prompt.strip(), response=response.strip())


def demo_budget_text(prompt: str, response: str) -> str:
    """The text whose token count the paper's packing budget uses: the demo plus its separator."""
    return demo_text(prompt, response) + DEMO_SEPARATOR


def icl_prompt(
    query: str, demos: Sequence[tuple[str, str]], content: str = "both", system: str | None = None
) -> str:
    """The in-context prompt: demos in the given order, then the query (the query is not stripped).

    `content` and `system` are the ablations' deviations (the paper: "both", None): a demo shows its
    question and answer ("both"), only its question, only its answer, or neither ("none": the bare
    template); `system` puts a paragraph before the demos.
    """
    parts = [system.strip()] if system else []
    parts += [demo_part(p, r, content) for p, r in demos]
    parts.append(QUERY_TEMPLATE.format(query=query))
    return DEMO_SEPARATOR.join(parts)


def demo_part(prompt: str, response: str, content: str) -> str:
    """One demo as an ablation shows it (`both` is the paper's `demo_text`)."""
    question, answer = DEMO_TEMPLATE.split("\n\n")
    if content == "both":
        return demo_text(prompt, response)
    if content == "question":
        return question.format(prompt=prompt.strip())
    if content == "answer":
        return answer.format(response=response.strip())
    if content == "none":
        return DEMO_TEMPLATE.format(prompt="", response="")
    raise ValueError(f"unknown demo content '{content}'")


def zero_shot_prompt(query: str) -> str:
    """The paper's direct-prompting baseline."""
    return ZERO_SHOT_TEMPLATE.format(query=query.strip())


def default_urial_path() -> Path:
    """The project's own URIAL-style constant prompt, shipped in the package."""
    return package_resource("urial_style.txt")


def read_urial_prefix(path: str | Path | None = None) -> str:
    """Read a URIAL-format prompt file (the project's own by default, or any URIAL prompt file)."""
    source = Path(path) if path else default_urial_path()
    if not source.exists():
        raise UserError(f"{source}: URIAL prompt file not found")
    text = read_text(source)
    if "# Query:" not in text or "# Answer:" not in text:
        raise UserError(f"{source}: not a URIAL-format prompt (needs '# Query:' and '# Answer:' blocks)")
    return text


def urial_prompt(query: str, prefix: str) -> str:
    """A URIAL-style prompt: the constant prefix, then the query as one more fenced turn."""
    return prefix.rstrip("\n") + "\n\n" + URIAL_QUERY_TEMPLATE.format(query=query.strip())


def chat_prompt(
    query: str, tokenizer: PreTrainedTokenizerBase, form: str = "template", bos: bool = False
) -> str:
    """A chat model's prompt for one user turn (the chat baselines), without its BOS (the ids carry it).

    `form` `llama-chat` is Llama-2-chat as the reference prompts it (`LLAMA_CHAT_TEMPLATE` with the
    default system prompt); `template` is the tokenizer's own chat template, whose leading BOS text is
    dropped when `bos` (the prompt's ids then start with the BOS id instead).
    """
    if form == "llama-chat":
        return LLAMA_CHAT_TEMPLATE.format(system=LLAMA_CHAT_SYSTEM, query=query.strip())
    if form != "template":
        raise ValueError(f"unknown chat form '{form}'")
    messages = [{"role": "user", "content": query.strip()}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return text.removeprefix(tokenizer.bos_token) if bos and tokenizer.bos_token else text


def cut_at_stop(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut generated text at the earliest stop string; return (answer, whether a stop was hit)."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def clean_answer(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    """Cut at the stop, strip, and drop a URIAL answer's closing fence."""
    answer, stopped = cut_at_stop(text, stops)
    answer = answer.strip()
    if tuple(stops) == URIAL_STOP and answer.endswith("```"):
        answer = answer[:-3].rstrip()
    return answer, stopped
