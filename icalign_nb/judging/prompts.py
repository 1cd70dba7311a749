"""Pairwise judge prompts: the paper's (fetched from FastChat's pinned file) and the project's own."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.fetch import fetch
from ..errors import UserError, where
from ..files import iter_jsonl

FASTCHAT_PROMPTS = "judge/fastchat_prompt.jsonl"
PAPER_PROMPT_ID = 1  # FastChat's "general" reviewer prompt, the one the paper used


@dataclass(frozen=True)
class JudgePrompt:
    """A pairwise prompt: a system message and a user template with {question}, {answer_1}, {answer_2}."""

    name: str
    system: str
    template: str

    def messages(self, question: str, answer_1: str, answer_2: str) -> list[dict[str, str]]:
        """Chat messages asking to compare Assistant 1's and Assistant 2's answers to `question`."""
        user = self.template.format(question=question, answer_1=answer_1, answer_2=answer_2)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


# The project's own words; same output contract as the paper's prompt (first line: "s1 s2").
_DEFAULT_SYSTEM = "You are a careful, impartial reviewer of answers written by AI assistants."
_DEFAULT_TEMPLATE = (
    "A user asked the question below, and two AI assistants answered it.\n\n"
    "### Question\n{question}\n\n"
    "### Assistant 1's answer\n{answer_1}\n### End of Assistant 1's answer\n\n"
    "### Assistant 2's answer\n{answer_2}\n### End of Assistant 2's answer\n\n"
    "Judge how well each answer serves the user: is it helpful, on topic, correct, and as detailed as "
    "the question calls for? Give each assistant one overall score from 1 (useless) to 10 (excellent). "
    "The order in which the answers appear, their length and their style alone must not sway you.\n"
    "Reply with the two scores alone on the first line, Assistant 1's first, separated by one space "
    "(for example: 7 4). From the second line on, explain your scores briefly."
)


def default_prompt() -> JudgePrompt:
    """The project's own pairwise prompt with the paper's output contract."""
    return JudgePrompt("default", _DEFAULT_SYSTEM, _DEFAULT_TEMPLATE)


def paper_prompt(data_dir: str | Path | None = None) -> JudgePrompt:
    """The paper's judge prompt, built from row `prompt_id` 1 of FastChat's pinned prompt file."""
    path = fetch(FASTCHAT_PROMPTS, data_dir)
    for lineno, obj in iter_jsonl(path):
        if obj.get("prompt_id") != PAPER_PROMPT_ID:
            continue
        for field in ("system_prompt", "prompt_template", "defaults"):
            if field not in obj:
                raise UserError(f"{where(path, lineno, field)} is missing")
        defaults = obj["defaults"]
        if not isinstance(defaults, dict) or not isinstance(defaults.get("prompt"), str):
            raise UserError(f"{where(path, lineno, 'defaults')} must hold a 'prompt' string")
        # Fill the instruction slot now; keep the answer slots for later.
        template = obj["prompt_template"].replace(
            "{prompt}", defaults["prompt"].replace("{", "{{").replace("}", "}}")
        )
        return JudgePrompt("paper", obj["system_prompt"], template)
    raise UserError(f"{path}: no row with prompt_id {PAPER_PROMPT_ID} (the paper's 'general' prompt)")


def get_prompt(name: str, data_dir: str | Path | None = None) -> JudgePrompt:
    """A judge prompt by name: `paper` or `default`."""
    if name == "paper":
        return paper_prompt(data_dir)
    if name == "default":
        return default_prompt()
    raise UserError(f"unknown judge prompt '{name}' (paper, default)")
