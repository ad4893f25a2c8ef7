"""reelrt.quantize"""
