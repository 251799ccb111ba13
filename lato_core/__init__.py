"""LaTo core: face analysis, landmark prediction and the landmark-conditioned DiT. Never imports ComfyUI."""
