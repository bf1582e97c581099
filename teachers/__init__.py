"""What only a teacher does: presets, fine-tuning on D_L, labeling D_T into the store."""
