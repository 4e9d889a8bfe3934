"""Pure metric kernels: tensors in, per-sample tensors out, no hidden state."""
