"""What only a student does: presets, initialisation, distillation from the store, fine-tuning."""
