"""glmtune serve: the OpenAI-compatible API on the inference engine."""
