"""Layer 2, engines: the Engine protocol and its HF (with a KV-cached step API), vLLM and OpenAI-compatible implementations; joint decoding."""
