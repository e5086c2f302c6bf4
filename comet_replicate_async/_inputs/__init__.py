"""What a prediction is asked with: the checked base of typed inputs, the seven FLUX inputs and image fields."""
