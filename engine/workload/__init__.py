"""What to send: workload profiles (TOML), length distributions, prompt synthesis and the input-length
calibration that makes synthetic prompts hit their target on any server's tokenizer."""
