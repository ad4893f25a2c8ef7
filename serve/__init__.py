"""reelrt.serve: bundles as a local HTTP service for engines in any language.

    reelrt serve bundles/gpt2-int4 npc=bundles/npc-gpt2 posters=bundles/mobilenet-int8 --parallel 8

Text generation speaks the OpenAI completions and chat completions APIs (streaming with
server-sent events; structured output with response_format),
classifiers the Open Inference Protocol v2 (what Triton and KServe clients send) and a plain
/v1/classify; /metrics is Prometheus text. Generation bundles share one decoder per bundle
through N slots (continuous batching, runtime/tasks/generation/slots.py). The same ASGI app
runs under uvicorn (app.py) or on a Ray Serve cluster (ray_app.py). Never imports torch.
"""
from __future__ import annotations
