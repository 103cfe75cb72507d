"""attnlife.integrations: the tracker as a Hugging Face Trainer callback (`hf`) and a Lightning
callback (`lightning`), nothing else."""
