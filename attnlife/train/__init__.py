"""attnlife.train"""
