"""Files in the data directory: result images and the model registry."""
