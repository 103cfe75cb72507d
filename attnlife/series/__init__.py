"""Checkpoint series: enumerate and open our runs, nanoGPT ckpt.pt files and Hugging Face
revisions (`refs`), the one model loader (`models`), and the workers that map a pass over a
series (`workers`)."""
