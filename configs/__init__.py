"""Config presets shipped with img2mesh (default.yaml, cpu.yaml)."""
