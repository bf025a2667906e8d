"""Host twin of firmware/tinyllama: model configurations, llama2.c's checkpoint
and tokenizer formats, synthetic weights, and the numpy reference forward pass
and sampler the guest is checked against."""
