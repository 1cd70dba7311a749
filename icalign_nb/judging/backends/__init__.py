"""Judge backends: an OpenAI-compatible chat endpoint, a local transformers model, the offline fitted
judge and embedding proxy, and the release's recorded replies; each is a `Judge` (see
`judging.comparisons`)."""

from __future__ import annotations

from ..comparisons import Judge
from ..spec import JudgeSpec


def make_judge(
    spec: JudgeSpec,
    data_dir: str | None = None,
    concurrency: int = 8,
    max_retries: int = 6,
    timeout: float = 120.0,
) -> Judge:
    """The judge backend of a judge spec."""
    if spec.kind == "recorded":
        from .recorded import RecordedJudge

        return RecordedJudge(spec, data_dir)
    if spec.kind == "embedding":
        from .embedding import EmbeddingJudge

        return EmbeddingJudge(spec)
    if spec.kind == "fitted":
        from .fitted import FittedJudge

        return FittedJudge(spec)
    from ..prompts import get_prompt

    prompt = get_prompt(spec.prompt, data_dir)
    if spec.kind == "openai":
        from .openai_chat import OpenAIJudge

        return OpenAIJudge(spec, prompt, concurrency=concurrency, max_retries=max_retries, timeout=timeout)
    from .local import LocalJudge

    return LocalJudge(spec, prompt)
