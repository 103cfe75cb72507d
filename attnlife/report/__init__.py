"""attnlife.report"""
