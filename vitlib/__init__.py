"""vitlib: a paper-faithful Vision Transformer, its CNN rivals, and the tools to study them."""
