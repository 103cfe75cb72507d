"""attnlife.integrations"""
