"""The study: its arms and presets, the runner that trains every arm, and the report (tables, figures, Grad-CAM)."""
