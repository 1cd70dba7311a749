"""Optional generation backends: vLLM in-process, and any OpenAI-compatible completions server."""
