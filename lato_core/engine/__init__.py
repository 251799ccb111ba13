"""LaTo inference as the nodes drive it: model files, the model holder (storage, offload, LoRA clones),
the text encoder, landmark tokens and one edit from source latent to edited latent."""
