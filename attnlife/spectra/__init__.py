"""attnlife.spectra"""
