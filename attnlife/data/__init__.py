"""attnlife.data"""
