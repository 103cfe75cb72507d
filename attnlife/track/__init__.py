"""attnlife.track"""
