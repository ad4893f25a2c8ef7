"""Text generation, in rooms: the decoder's typed facts (config.py), the runner that decodes
any set of rows over its key/value cache (decoder.py), the sampler's chain of logits processors
(sampling.py), the public request type (request.py), the scheduler that plans each step
(scheduler.py), its worker thread for servers (slots.py), text from tokens (pieces.py,
detokenize.py) and TextGenerator, the in-process client (generator.py). Importing the package
imports none of them (serve's command line reads defaults.py alone)."""
from __future__ import annotations
