"""What only a teacher does: fine-tuning on D_L (with restarts), the quality gate, labeling D_T into the store."""
