"""The model and SimCLR's pieces: ResNet, encoder + heads, contrastive objective, LARS, learning-rate schedule."""
