"""The live pipeline: VAD, packing, ASR jobs, reordering, translation and figures."""
