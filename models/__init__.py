"""reelrt.models"""
