"""attnlife.analysis"""
