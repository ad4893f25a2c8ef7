"""reelrt.export"""
