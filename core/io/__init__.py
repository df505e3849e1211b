"""Image and sequence IO through OpenImageIO (and PyAV for movies). Pure: no host imports."""
