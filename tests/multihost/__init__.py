"""Scripts that run in their own processes (fake devices, several hosts)."""
