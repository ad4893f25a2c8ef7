"""reelrt.bench"""
