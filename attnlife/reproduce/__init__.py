"""attnlife.reproduce: the published four-run protocol over datasets and seeds."""
