"""Generation: request/result types and the backend protocol; the transformers, vLLM and
OpenAI-compatible server backends; run directories that resume after a kill; exports."""
