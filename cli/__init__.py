"""reelrt: export, quantize, compile and run CNN, LSTM and GPT-2 models on edge devices.

The stages live in subpackages: reelrt.models, reelrt.export, reelrt.quantize,
reelrt.runtime (what clients ship) and reelrt.bench.
"""
__version__ = "0.1.0"
