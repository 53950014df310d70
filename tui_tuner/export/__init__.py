"""Merged safetensors, GGUF through llama.cpp, Ollama Modelfiles."""
