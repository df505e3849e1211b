"""Host adapters: ComfyUI registration and bridges, the headless graph runner, the command line."""
