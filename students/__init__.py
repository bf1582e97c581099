"""What only a student does: presets, initialisation, the student stages (MLM, distillation, fine-tuning), evaluation, the report and the exports."""
