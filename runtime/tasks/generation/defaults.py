"""The engine's defaults that a command line shows before anything heavy is imported: serve's
options (serve/options.py) take theirs from here, so they are written once."""
PREFILL_CHUNK = 16  # prompt tokens run per step while others decode (bench/RESULTS.md, "Serving": the trade)
MAX_WAITING = 64    # requests waiting for a slot before the line refuses
GENERATION = {"max_new_tokens": 64, "temperature": 0.0, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.0}
