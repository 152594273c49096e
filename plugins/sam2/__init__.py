"""samfx plugin 'sam2': SAM2 / SAM2.1 (Hiera encoder, prompt encoder, mask decoder, memory)."""
