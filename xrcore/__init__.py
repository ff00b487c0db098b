"""The XR runtime: frame loop, backends (OpenXR, headless simulator), GL contexts, renderer, scene, input."""
