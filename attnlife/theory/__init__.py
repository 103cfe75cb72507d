"""attnlife.theory"""
