"""A scripted OpenAI-compatible model server standing in for the writer LLM in tests and the demo.

`robot-fleet fake-llm` runs it; `build_app(ServerConfig(...))` gives the Starlette app.
"""
